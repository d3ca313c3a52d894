"""`listener web`: Datasette started on loopback over a real database, queried through its
JSON API: full-text search, the canned queries, and no writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from listener.store import open_store
from tests.polls import apply_poll
from tests.smtp import free_port
from tests.test_cli_functions import (
    NOW,
    _Prediction,
    labelled,  # noqa: F401 (a fixture)
)
from tests.test_store import make_item, poll

pytest.importorskip("datasette")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


@pytest.fixture
def web(
    labelled: tuple[Path, Path, dict[int, int]],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> Iterator[tuple[str, dict[int, int]]]:
    db, config, ids = labelled
    # A new feed's archive: first seen with the others, dated years before. Like the
    # digests, the week's queries leave it out. Datasette's SQL reads SQLite's own clock,
    # which `pytest --clock` does not move (only Python's): a fixed date far in the past is
    # old on either clock, where "a month before NOW" would be next year's on the real one.
    store = open_store(db)
    (source,) = store.feed_sources(None)
    archive = make_item(
        source.id,
        99,
        title="Archives : le plan social de 2019",
        published_at=datetime(2019, 3, 1, tzinfo=UTC),
    )
    apply_poll(store, poll(source.id, started_at=NOW - timedelta(minutes=20)), [archive])
    ids[99] = store.item_ids_for_keys([archive.key])[archive.key]
    store.save_predictions(
        "v1", [(ids[99], _Prediction(("human_resources",), {"human_resources": 0.95}, False))], NOW
    )
    store.close()
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    command = [sys.executable, "-m", "listener", "--config", str(config), "--db", str(db)]
    command += ["--log-format", "json", "web", "--port", str(port)]
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/{db.stem}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"http://127.0.0.1:{port}/-/versions.json")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "datasette did not start"
                time.sleep(0.2)  # polling a server started in another process
        yield base, ids
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_web_view_searches_items_and_serves_the_canned_queries(
    web: tuple[str, dict[int, int]],
) -> None:
    base, ids = web
    found = get(f"{base}/items.json?_search=recrute&_shape=array")
    assert [row["id"] for row in found] == [ids[1]]
    by_function = {
        row["function"]: row["items"]
        for row in get(f"{base}/this_week_by_function.json?_shape=array")
    }
    # Item 3's correction wins; the uncertain item 2 counts apart; the archive not at all.
    assert by_function == {
        "communication": 2,
        "human_resources": 1,
        "marketing": 1,
        "(uncertain)": 1,
    }
    hr = get(f"{base}/function_items.json?function=human_resources&_shape=array")
    assert [(row["id"], row["source"]) for row in hr] == [(ids[1], "model")]
    mentions = get(f"{base}/watch_mentions.json?watch=acme&_shape=array")
    assert {row["id"] for row in mentions} == set(ids.values()) - {ids[99]}  # polled after
    uncertain = get(f"{base}/uncertain_items.json?_shape=array")
    assert [row["id"] for row in uncertain] == [ids[2]]
    (feed,) = get(f"{base}/feed_health.json?_shape=array")
    assert (feed["title"], feed["items"]) == ("RH blog", 6)


def test_web_view_is_read_only_and_described(web: tuple[str, dict[int, int]]) -> None:
    base, _ = web
    sql = urllib.parse.quote("delete from items")
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"{base}.json?sql={sql}")
    assert refused.value.code == 400
    root = base.rsplit("/", 1)[0]
    meta = get(f"{root}/-/metadata.json")
    assert meta["title"] == "listener"
    database = next(iter(meta["databases"].values()))
    assert database["tables"]["items"]["fts_table"] == "items_fts"
    assert set(database["queries"]) >= {"this_week_by_function", "uncertain_items"}
