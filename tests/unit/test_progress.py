"""Progress reporting: log lines off a terminal, silence when disabled."""

import io

from h5par.engine.progress import Progress


def test_log_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(total=4 * 2**20, stream=out, interval=0.0)
    progress.update(2**20)
    progress.update(2**20)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("h5par progress:  50.0% 2.0 MiB of ~4.0 MiB")
    assert "MB/s" in lines[-1] and "ETA" in lines[-1]


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    progress = Progress(total=10, enabled=False, stream=out, interval=0.0)
    progress.update(5)
    progress.close()
    assert out.getvalue() == ""
