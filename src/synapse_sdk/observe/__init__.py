"""See what a run did: its whole record, its log, a timeline and an HTML report.

Reads the run journal and the run's JSON-lines log; writes nothing. The
timeline is built once (``Span``s) and drawn twice: in the terminal (rich)
and as SVG in the report.
"""

from ._log import LEVELS, at_least, describe_line, follow, level_of, log_path, read_log
from ._report import render_report, report_sections
from ._terminal import gantt, show
from ._timeline import Span, spans_of
from ._view import Attempt, RunView, load_run

__all__ = [
    'LEVELS',
    'Attempt',
    'RunView',
    'Span',
    'at_least',
    'describe_line',
    'follow',
    'gantt',
    'level_of',
    'load_run',
    'log_path',
    'read_log',
    'render_report',
    'report_sections',
    'show',
    'spans_of',
]
