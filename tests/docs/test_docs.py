"""The figures in README.md and docs/*.md match the artifacts they name (bench/check_docs.py).

The checker itself is tested first, on a tiny synthetic markdown + JSON pair, so a checker that passed everything
would fail here: a drifted number, an unannotated measurement and a drifted table cell must each be reported.
"""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_docs", ROOT / "bench" / "check_docs.py")
check_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_docs)


def check(tmp_path, markdown, artifact=None, table=None):
    """Run the checker on one synthetic page whose references are relative to tmp_path."""
    (tmp_path / "run.json").write_text(json.dumps(artifact or {}))
    (tmp_path / "tables.md").write_text(table or "")
    page = tmp_path / "page.md"
    page.write_text(markdown)
    old_root = check_docs.ROOT
    check_docs.ROOT = tmp_path
    try:
        return check_docs.check_file(page)
    finally:
        check_docs.ROOT = old_root


ARTIFACT = {"gan": {"fid": 16.936, "seconds": 266.7, "seeds": [{"fid": 16.9}, {"fid": 20.2}]},
            "decode": {"fast": 48.68, "slow": 28.6}, "share": 0.807}


def test_matching_figures_pass_at_their_written_precision(tmp_path):
    page = ("FID 16.9<!-- ref: run.json#gan.fid --> (16.94<!-- ref: run.json#gan.fid -->), the stage took "
            "267 s<!-- ref: run.json#gan.seconds --> (4.4 min<!-- ref: run.json#gan.seconds / 60 -->), "
            "1.70x<!-- ref: run.json#decode.fast / run.json#decode.slow -->, "
            "81%<!-- ref: run.json#share * 100 -->, seeds up to 20.2<!-- ref: run.json#gan.seeds.*.fid.max() -->.\n")
    checked, problems = check(tmp_path, page, ARTIFACT)
    assert problems == []
    assert checked == 7


def test_a_drifted_number_fails(tmp_path):
    checked, problems = check(tmp_path, "the stage took 181 s<!-- ref: run.json#gan.seconds -->\n"
                                        "1.65x<!-- ref: run.json#decode.fast / run.json#decode.slow -->\n", ARTIFACT)
    assert len(problems) == 2
    assert "181 drifted" in problems[0] and "page.md:1" in problems[0]
    assert "1.65 drifted" in problems[1]


def test_precision_is_the_written_one(tmp_path):
    # 16.936 is "16.9" and "16.94", but not "16.93" nor "17.0"
    _, problems = check(tmp_path, "FID 16.93<!-- ref: run.json#gan.fid --> and 17.0<!-- ref: run.json#gan.fid -->\n",
                        ARTIFACT)
    assert len(problems) == 2


def test_an_unannotated_measurement_fails_and_a_marked_constant_passes(tmp_path):
    page = ("The demo took 581 s on this machine, and FID 16.9 here; 240 tests.\n"
            "Batches of 64 rows, a 2-core VM, 16 clients<!-- const --> at 500 MB free, 28x28 digits, 3 seeds.\n"
            "```\naigc-tf gan train --steps 300   # 10 min\n```\n"
            "Inline code is a command: `--precision bf16` `5 s`.\n")
    _, problems = check(tmp_path, page, ARTIFACT)
    assert [p.split(": ", 1)[1].split(" ")[0] for p in problems] == ["581", "16.9", "240"]


def test_a_missing_artifact_or_path_fails(tmp_path):
    _, problems = check(tmp_path, "1.0 s<!-- ref: nowhere.json#a -->, 2.0 s<!-- ref: run.json#gan.nope -->\n",
                        ARTIFACT)
    assert len(problems) == 2
    assert "no artifact nowhere.json" in problems[0]
    assert "no key 'nope'" in problems[1]


TABLE = ("| model | FID | label accuracy |\n|---|---:|---:|\n| GAN (`runs/gan`) | 16.9 | - |\n"
         "| conditional GAN | 22.0 | 99.4% |\n")


def test_tables_are_checked_cell_by_cell(tmp_path):
    good = "<!-- table: tables.md -->\n" + TABLE
    checked, problems = check(tmp_path, good, table=TABLE)
    assert problems == [] and checked == 3
    drifted = "<!-- table: tables.md -->\n" + TABLE.replace("99.4%", "99.5%")
    _, problems = check(tmp_path, drifted, table=TABLE)
    assert len(problems) == 1 and "drifted" in problems[0]
    unannotated = TABLE  # the same table with no table reference: its FID column looks measured
    _, problems = check(tmp_path, unannotated, table=TABLE)
    assert len(problems) == 3


def test_a_cell_reference_into_a_table_artifact(tmp_path):
    page = 'label accuracy 99.4%<!-- ref: tables.md#"conditional GAN"."label accuracy" -->\n'
    _, problems = check(tmp_path, page, table=TABLE)
    assert problems == []


def test_text_reference_finds_the_number_on_the_quoted_line(tmp_path):
    (tmp_path / "notes.md").write_text("the losses agree to atol=1e-5 here\n")
    _, ok = check(tmp_path, 'to 1e-5<!-- ref: notes.md:"atol" -->\n')
    _, bad = check(tmp_path, 'to 1e-7<!-- ref: notes.md:"atol" -->\n')
    assert ok == [] and len(bad) == 1


def test_local_links_must_lead_somewhere(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## What was checked\n")
    page = ("[ok](other.md#what-was-checked) [ok too](run.json) [web](https://example.com)\n"
            "[gone](missing.md) [no heading](other.md#nowhere)\n")
    _, problems = check(tmp_path, page, ARTIFACT)
    assert [p.split(": ", 1)[1] for p in problems] == ["link to a missing file: missing.md",
                                                      "link to a missing heading: other.md#nowhere"]


def test_the_readme_and_docs_match_their_artifacts():
    """The real check: every figure in README.md and docs/*.md, as `make check-docs` runs it."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = [p for f in files for p in check_docs.check_file(f)[1]]
    assert problems == [], "\n".join(problems)
