"""See what a run did: its whole record, its log, a timeline and an HTML report.

Reads the run journal and the run's JSON-lines log (or, on a machine without that
file, the run's last lines as the journal keeps them); writes nothing. The
timeline is built once (``Span``s) and drawn twice: in the terminal (rich)
and as SVG in the report.
"""

from ._log import (
    LEVELS,
    at_least,
    describe_line,
    epoch,
    follow,
    follow_journal,
    journal_log,
    level_of,
    log_path,
    parse_lines,
    read_log,
)
from ._report import render_report, report_sections
from ._terminal import gantt, show
from ._timeline import Span, spans_of
from ._view import Attempt, RunView, load_run
from ._watch import RunFollower

__all__ = [
    'LEVELS',
    'Attempt',
    'RunFollower',
    'RunView',
    'Span',
    'at_least',
    'describe_line',
    'epoch',
    'follow',
    'follow_journal',
    'gantt',
    'journal_log',
    'level_of',
    'load_run',
    'log_path',
    'parse_lines',
    'read_log',
    'render_report',
    'report_sections',
    'show',
    'spans_of',
]
