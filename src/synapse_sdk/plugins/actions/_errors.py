"""Errors in how an action is defined or called: bad input, not a failed run."""

from __future__ import annotations

from pydantic import ValidationError

from synapse_sdk.plugins.steps import ErrorKind, SynapseError


class ActionError(SynapseError):
    """Base of the errors the action layer raises before any step runs."""

    kind = ErrorKind.BAD_INPUT


class ActionDefinitionError(ActionError, TypeError):
    """The action class itself is incomplete (no params model, nothing to run)."""


class ParamsValidationError(ActionError, ValueError):
    """The params do not fit the action's model; ``problems`` lists every field at fault."""

    def __init__(self, action: str, problems: list[tuple[str, str]]) -> None:
        self.action = action
        self.problems = problems
        listing = '; '.join(f'{where}: {why}' for where, why in problems)
        super().__init__(f'invalid params for {action}: {listing}')

    @classmethod
    def from_pydantic(cls, action: str, error: ValidationError) -> ParamsValidationError:
        problems = []
        for item in error.errors():
            where = '.'.join(str(part) for part in item['loc']) or '(params)'
            why = item['msg']
            if item['type'] != 'missing' and 'input' in item:
                why += f' (got {item["input"]!r})'
            problems.append((where, why))
        return cls(action, problems)
