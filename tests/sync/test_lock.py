"""One sync of a data directory at a time: the second waits, says whom for, then goes on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from iozen_etl.sync.lock import sync_lock

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from iozen_etl.sync.lock import sync_lock
    with sync_lock(Path(sys.argv[1]), waiting=print):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def test_the_process_holding_it_goes_straight_in(tmp_path: Path) -> None:
    said: list[str] = []
    lock_file = tmp_path / "data" / "sync.lock"
    with sync_lock(lock_file, waiting=said.append), sync_lock(lock_file, waiting=said.append):
        assert said == []
    # Released: another process takes it at once.
    done = subprocess.run(
        [sys.executable, "-c", HOLDER, str(lock_file)], input="\n", capture_output=True, text=True
    )
    assert done.stdout.split() == ["held"], done.stderr


def test_a_second_process_waits_and_says_whom_for(tmp_path: Path) -> None:
    lock_file = tmp_path / "data" / "sync.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        said: list[str] = []
        entered = threading.Event()

        def second() -> None:
            with sync_lock(lock_file, waiting=said.append):
                entered.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        assert not entered.wait(0.5)
        (line,) = said
        folder = lock_file.parent.resolve()
        assert line.startswith(
            f"waiting for another sync of {folder} to finish (held by pid {holder.pid} since "
        ), line
        holder.communicate("\n", timeout=30)
        waiter.join(timeout=30)
        assert entered.is_set()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
