"""A benchmark's new run replaces its section of RESULTS.md; the old section moves to the history."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("benchmark_record", ROOT / "benchmarks" / "record.py")
record_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_module)

PAGE = "# Results\n\n## Speed: ours vs peer\n\nold table 1.5x\n\n## Other\n\nkept\n"


def test_a_rerun_replaces_its_section_and_keeps_the_old_one_in_history(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(PAGE)
    record_module.record("Speed: ours vs peer", "## Speed run (2026-12-03)\n\nnew table 1.7x\n", results)
    assert results.read_text() == ("# Results\n\n## Speed: ours vs peer\n\nLatest run: Speed run (2026-12-03)\n\n"
                                   "new table 1.7x\n\n## Other\n\nkept\n")  # the run's own heading kept as its date
    history = (tmp_path / "history" / "speed-ours-vs-peer.md").read_text()
    assert history.startswith("# Speed: ours vs peer: earlier runs, newest first\n") and "old table 1.5x" in history
    record_module.record("Speed: ours vs peer", "newest 1.8x", results)
    history = (tmp_path / "history" / "speed-ours-vs-peer.md").read_text()
    assert history.index("new table 1.7x") < history.index("old table 1.5x")  # newest first
    assert "newest 1.8x" in results.read_text() and "1.7x" not in results.read_text()


def test_a_new_benchmark_is_appended(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(PAGE)
    record_module.record("Brand new", "figures", results)
    assert results.read_text() == PAGE.rstrip() + "\n\n## Brand new\n\nfigures\n"
    assert not (tmp_path / "history").exists()
