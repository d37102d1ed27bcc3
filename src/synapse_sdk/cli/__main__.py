from synapse_sdk.cli.main import main

main()
