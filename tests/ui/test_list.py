"""The runs list on SQLite and PostgreSQL: filters and pages in the URL, over the journal's
index (``Journal.runs_page``: a keyset cursor, so a deep page costs what the first does)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from tests.journal.test_load import _BULK, MANY, plan

from synapse_sdk.journal import Journal, JournalError

from .conftest import UiServer

pytestmark = pytest.mark.both_databases

COUNT = 120

# run i: started i seconds after 2024-01-01; plugin alpha (odd i) or beta; action train
# (i divisible by 3) or upload; failed when i is divisible by 10, else succeeded
_ROWS = """
INSERT INTO runs (id, entrypoint, action, plugin, params, status, started_at, ended_at,
                  progress, host, pid)
VALUES (?, 'plugin:Action', ?, ?, '{}', ?, ?, ?, ?, 'test-host', 1)
"""


def stamp(i: int) -> str:
    minutes, seconds = divmod(i, 60)
    return f'2024-01-01T00:{minutes:02d}:{seconds:02d}+00:00'


def fill(journal: Journal) -> None:
    rows = [
        (
            f'run-{i:06d}',
            'train' if i % 3 == 0 else 'upload',
            'alpha' if i % 2 else 'beta',
            'failed' if i % 10 == 0 else 'succeeded',
            stamp(i),
            stamp(i + 1),
            i % 101,
        )
        for i in range(1, COUNT + 1)
    ]
    with journal.transaction() as db:
        db.executemany(_ROWS, rows)


def ids(page: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)">', page)


def link(page: str, name: str) -> str | None:
    found = re.search(rf'<a class="{name}" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def names(*numbers: int) -> list[str]:
    return [f'run-{i:06d}' for i in numbers]


def test_pages_walk_every_run_once_both_ways(ui: UiServer, journal: Journal) -> None:
    fill(journal)
    first = ui.get('/?limit=50')
    assert first.status == 200 and '120 matching' in first.text
    assert ids(first.text) == names(*range(120, 70, -1))
    assert link(first.text, 'newer') is None
    pages, target = [first.text], link(first.text, 'older')
    while target is not None:
        pages.append(ui.get(target).text)
        target = link(pages[-1], 'older')
    assert [len(ids(p)) for p in pages] == [50, 50, 20]
    assert [i for p in pages for i in ids(p)] == names(*range(120, 0, -1))
    back = ui.get(link(pages[-1], 'newer'))  # and back again, by the newer cursor
    assert ids(back.text) == ids(pages[1])
    assert ids(ui.get(link(back.text, 'newer')).text) == ids(first.text)


def test_filters_in_the_url(ui: UiServer, journal: Journal) -> None:
    fill(journal)
    failed = ui.get('/?status=failed&plugin=beta')
    assert ids(failed.text) == names(*range(120, 0, -10)) and '12 matching' in failed.text
    window = ui.get('/?action=train&since=2024-01-01T00:01:00&until=2024-01-01T00:01:30')
    assert ids(window.text) == names(87, 84, 81, 78, 75, 72, 69, 66, 63, 60)
    paged = ui.get('/?plugin=alpha&limit=7')
    assert ids(paged.text) == names(*range(119, 105, -2))
    older = link(paged.text, 'older')
    assert 'plugin=alpha' in older and 'limit=7' in older  # the filters stay in the URL
    assert ids(ui.get(older).text) == names(*range(105, 91, -2))
    none = ui.get('/?plugin=gamma')
    assert none.status == 200 and 'No run matches.' in none.text and '0 matching' in none.text


def test_runs_page_cursors(journal: Journal) -> None:
    fill(journal)
    page = journal.runs_page(5, status='failed')
    assert [r.id for r in page.runs] == names(120, 110, 100, 90, 80) and page.newer is None
    last = journal.runs_page(5, status='failed', before=page.older)
    assert [r.id for r in last.runs] == names(70, 60, 50, 40, 30)
    assert journal.runs_page(120).older is None  # all of them: no older page
    tail = journal.runs_page(100, before=journal.runs_page(119).older)
    assert [r.id for r in tail.runs] == names(1) and tail.older is None and tail.newer
    newest = journal.runs_page(3)
    assert journal.runs_page(3, after=newest.newer or f'{stamp(120)}|999999999').runs == []
    assert journal.count_runs(action='train', plugin='alpha') == 20
    for bad in ({'before': 'nonsense'}, {'before': f'{stamp(1)}|x'}):
        with pytest.raises(JournalError, match='not a page cursor'):
            journal.runs_page(5, **bad)
    with pytest.raises(JournalError, match='not both'):
        journal.runs_page(5, before=page.older, after=page.older)
    with pytest.raises(JournalError, match='unknown status'):
        journal.runs_page(5, status='sleeping')


def test_a_deep_page_of_100000_runs_is_read_from_the_index(
    journal: Journal, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = journal.db
    with journal.transaction():
        db.execute(_BULK[db.dialect], (MANY,))
    if db.dialect == 'postgresql':
        db.execute('ANALYZE runs')
    captured: list[tuple[str, tuple[Any, ...]]] = []
    real = db.fetchall

    def spy(sql: str, args: Any = ()) -> Any:  # the statement runs_page sends
        captured.append((sql, tuple(args)))
        return real(sql, args)

    middle = journal.runs_page(1, before=f'{stamp(0)[:10]}T13:53:20+00:00|50001')
    monkeypatch.setattr(db, 'fetchall', spy)
    deep = journal.runs_page(50, before=middle.older)
    failed = journal.runs_page(50, status='failed', before=middle.older)
    monkeypatch.setattr(db, 'fetchall', real)
    filtered = plugin_filter_plans(journal, monkeypatch)
    assert [r.id for r in middle.runs] == ['run-050000']
    assert [r.id for r in deep.runs] == [f'run-{i:06d}' for i in range(49_999, 49_949, -1)]
    assert [r.id for r in failed.runs][:2] == ['run-049990', 'run-049980']
    for sql, args in [c for c in captured if 'ORDER BY started_at' in c[0]]:
        shown = plan(journal, sql, args)
        if db.dialect == 'sqlite':
            assert 'runs_by_started' in shown and 'TEMP B-TREE' not in shown, shown
        else:
            assert 'runs_by_started' in shown and 'Sort' not in shown, shown
    for shown in filtered:  # a plugin or action nobody ran: from its index, not the table
        assert 'runs_by_plugin' in shown or 'runs_by_action' in shown, shown
        assert 'TEMP B-TREE' not in shown and 'Sort' not in shown, shown


def plugin_filter_plans(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plans of the list and count statements of a plugin or action filter."""
    db = journal.db
    captured: list[tuple[str, tuple[Any, ...]]] = []
    real_all, real_one = db.fetchall, db.fetchone

    def spy_all(sql: str, args: Any = ()) -> Any:
        captured.append((sql, tuple(args)))
        return real_all(sql, args)

    def spy_one(sql: str, args: Any = ()) -> Any:
        captured.append((sql, tuple(args)))
        return real_one(sql, args)

    monkeypatch.setattr(db, 'fetchall', spy_all)
    monkeypatch.setattr(db, 'fetchone', spy_one)
    try:
        assert journal.runs_page(50, plugin='nobody').runs == []
        assert journal.runs_page(50, action='nothing').runs == []
        assert journal.count_runs(plugin='nobody') == 0
    finally:
        monkeypatch.setattr(db, 'fetchall', real_all)
        monkeypatch.setattr(db, 'fetchone', real_one)
    filtered = [c for c in captured if 'plugin = ' in c[0] or 'action = ' in c[0]]
    assert len(filtered) == 3, captured
    return [plan(journal, sql, args) for sql, args in filtered]
