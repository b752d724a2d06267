"""Every stage script runs by hand; bad input gives one line, exit status != 0, no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from conftest import ROOT, env, load_nc, script

from twostage import run_point
from twostage.config import expand_study, load_config
from twostage.plots import FIGURES, FORMATS

STAGES = ("simulate", "pretrain", "align", "downstream", "theory", "risk", "figures")


@pytest.mark.parametrize("name", STAGES)
def test_help(name):
    res = script(name, "--help")
    assert res.returncode == 0 and "usage:" in res.stdout and "--out" in res.stdout


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The whole chain run by hand on one point of the tiny test config."""
    tmp = tmp_path_factory.mktemp("chain")
    cfg = load_config(ROOT / "tests" / "configs" / "tiny.yaml")
    point = expand_study("tiny", cfg["studies"]["tiny"])[0]
    f = {s: tmp / f"{s}.nc" for s in ("simulate", "pretrain", "align", "downstream", "theory")}
    steps = [
        (
            "simulate",
            "--config",
            str(ROOT / "tests/configs/tiny.yaml"),
            "--study",
            "tiny",
            "--point-id",
            point.point_id,
            "--out",
            str(f["simulate"]),
        ),
        ("pretrain", "--in", str(f["simulate"]), "--out", str(f["pretrain"])),
        ("align", "--in", str(f["pretrain"]), "--out", str(f["align"])),
        (
            "downstream",
            "--align",
            str(f["align"]),
            "--simulate",
            str(f["simulate"]),
            "--out",
            str(f["downstream"]),
        ),
        ("theory", "--point", point.to_json(), "--out", str(f["theory"])),
        (
            "risk",
            "--downstream",
            str(f["downstream"]),
            "--theory",
            str(f["theory"]),
            "--ks-bootstrap",
            "20",
            "--out-risk",
            str(tmp / "risk.nc"),
            "--out-theory",
            str(tmp / "theory_all.nc"),
        ),
        (
            "figures",
            "--risk",
            str(tmp / "risk.nc"),
            "--theory",
            str(tmp / "theory_all.nc"),
            "--outdir",
            str(tmp / "fig"),
            "--table",
            str(tmp / "summary.csv"),
        ),
    ]
    for name, *args in steps:
        res = script(name, *args)
        assert res.returncode == 0, (name, res.stderr)
    return tmp, point, f


def test_chain_by_hand_equals_the_api(chain):
    tmp, point, f = chain
    assert sorted(p.name for p in (tmp / "fig").iterdir()) == sorted(
        f"{name}.{fmt}" for name in FIGURES for fmt in FORMATS
    )
    api = run_point(
        "factor",
        {**point.population, **point.estimator, "n": point.n, "alpha": point.alpha},
        replicates=point.replicates,
        seed=point.seed,
        study="tiny",
        ks_bootstrap=20,
    )
    with xr.open_dataset(f["downstream"], engine="h5netcdf") as down:
        xr.testing.assert_equal(down.load(), api["downstream"])
    with xr.open_dataset(tmp / "risk.nc", engine="h5netcdf") as risk:
        xr.testing.assert_equal(risk.load(), api["risk"])


def _fails_cleanly(res, out, *needles):
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def test_missing_input(tmp_path):
    out = tmp_path / "o.nc"
    _fails_cleanly(
        script("pretrain", "--in", str(tmp_path / "nope.nc"), "--out", str(out)),
        out,
        "nope.nc",
        "does not exist",
    )


def test_wrong_stage_input(chain, tmp_path):
    _, _, f = chain
    out = tmp_path / "o.nc"
    _fails_cleanly(
        script("pretrain", "--in", str(f["align"]), "--out", str(out)),
        out,
        "'align' file",
        "'simulate'",
    )
    _fails_cleanly(
        script(
            "downstream",
            "--align",
            str(f["pretrain"]),
            "--simulate",
            str(f["simulate"]),
            "--out",
            str(out),
        ),
        out,
        "'pretrain' file",
    )


def test_corrupt_input(chain, tmp_path):
    _, _, f = chain
    bad = tmp_path / "truncated.nc"
    bad.write_bytes(f["simulate"].read_bytes()[:2000])
    out = tmp_path / "o.nc"
    _fails_cleanly(
        script("pretrain", "--in", str(bad), "--out", str(out)),
        out,
        "truncated.nc",
        "not a readable",
    )


def test_bad_arguments(tmp_path):
    out = tmp_path / "o.nc"
    _fails_cleanly(script("simulate", "--point", "{not json", "--out", str(out)), out, "--point")
    _fails_cleanly(
        script("pretrain", "--in", "x.nc", "--out", str(tmp_path / "o.txt")),
        tmp_path / "o.txt",
        ".nc",
    )
    res = script(
        "simulate",
        "--config",
        str(ROOT / "tests/configs/tiny.yaml"),
        "--study",
        "nope",
        "--out",
        str(out),
    )
    assert res.returncode != 0 and "nope" in res.stderr and not out.exists()


def test_stage_jobs_run_one_blas_thread_even_for_libraries_loaded_late():
    """cli.run pins BLAS threads also for numpy/scipy imported inside main (the scripts
    import them lazily): by hand, without Snakemake's thread variables, a job must compute
    the same numbers as in the workflow."""
    code = (
        "from twostage import cli\n"
        "def main(argv):\n"
        "    import numpy, scipy.linalg, threadpoolctl\n"
        "    print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info()}))\n"
        "cli.run(main, [])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == "[1]", res.stdout + res.stderr


def test_outputs_honour_the_umask(tmp_path):
    """Outputs are written to a private temporary file and renamed: the final file gets the
    mode any new file would (0666 minus the umask), not mkstemp's 0600."""
    code = (
        "import os, sys\n"
        "os.umask(int(sys.argv[2], 8))\n"
        "from twostage.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    open(tmp, 'w').write('x')\n"
    )
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        out = tmp_path / f"out{umask}.txt"
        subprocess.run([sys.executable, "-c", code, str(out), umask], check=True, env=env())
        assert out.stat().st_mode & 0o777 == mode, (umask, oct(out.stat().st_mode))


def test_outputs_are_checked_before_any_work(tmp_path):
    """No output may overwrite an input or another output, be a directory, or lie under a
    path that cannot be a directory: one line, exit 2, inputs untouched, nothing written."""
    src = tmp_path / "simulate.nc"
    src.write_bytes(b"not touched")
    res = script("pretrain", "--in", str(src), "--out", str(src))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "--out" in res.stderr and "is also the input --in" in res.stderr
    assert src.read_bytes() == b"not touched" and not list(tmp_path.glob(".simulate.nc.*"))
    same = tmp_path / "r.nc"
    res = script(
        "risk", "--downstream", str(src), "--theory", str(src),
        "--out-risk", str(same), "--out-theory", str(same),
    )  # fmt: skip
    _fails_cleanly(res, same, "--out-theory and --out-risk are the same file")
    folder = tmp_path / "folder.nc"
    folder.mkdir()
    _fails_cleanly(script("theory", "--point", "{}", "--out", str(folder)), tmp_path / "x.nc",
                   "is a directory")  # fmt: skip
    under = src / "sub" / "out.nc"
    _fails_cleanly(script("theory", "--point", "{}", "--out", str(under)), under,
                   "is not a directory")  # fmt: skip


def test_multi_file_outputs_are_all_or_nothing(tmp_path, monkeypatch):
    """risk.nc and theory.nc (and a table's CSV and LaTeX) are written both or neither: a
    failure while writing the second leaves no file under either final name."""
    from twostage import io, tables

    ds = xr.Dataset({"x": ("i", [1.0, 2.0])})
    calls = []

    def fail_second(data, tmp, stage):
        calls.append(stage)
        if len(calls) == 2:
            raise OSError("disk full")
        data.to_netcdf(tmp, engine=io.ENGINE)

    monkeypatch.setattr(io, "_to_netcdf", fail_second)
    a, b = tmp_path / "theory.nc", tmp_path / "risk.nc"
    with pytest.raises(OSError, match="disk full"):
        io.write_datasets([(ds, a, "theory_summary"), (ds, b, "risk")])
    assert calls == ["theory_summary", "risk"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no pair half, no temp left
    monkeypatch.undo()
    assert io.write_datasets([(ds, a, "theory_summary"), (ds, b, "risk")]) == [a, b]
    assert a.is_file() and b.is_file()

    class Broken:
        def to_csv(self, path):
            Path(path).write_text("a,b\n")

    monkeypatch.setattr(tables, "latex", lambda df, caption: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        tables.write_table(Broken(), tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.tex").exists()


def test_theory_of_several_points_in_one_job_equals_one_job_per_point(chain, tmp_path):
    """theory.py with --point/--out repeated (a batch, as the workflow runs it) writes the
    same limit for each point as a job of its own; a --point without its --out, or two
    points onto one file, is refused before any work and writes nothing."""
    _, point, f = chain
    cfg = load_config(ROOT / "tests" / "configs" / "tiny.yaml")
    other = expand_study("tiny", cfg["studies"]["tiny"])[1]
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    res = script("theory", "--point", point.to_json(), "--out", str(a),
                 "--point", other.to_json(), "--out", str(b))  # fmt: skip
    assert res.returncode == 0, res.stderr
    single = tmp_path / "single.nc"
    assert script("theory", "--point", other.to_json(), "--out", str(single)).returncode == 0
    for got, want in ((a, f["theory"]), (b, single)):
        x, y = load_nc(got), load_nc(want)
        xr.testing.assert_identical(x.drop_attrs(), y.drop_attrs())
        assert x.attrs["point_id"] == y.attrs["point_id"]
    c = tmp_path / "c.nc"
    res = script("theory", "--point", point.to_json(), "--point", other.to_json(), "--out", str(c))
    _fails_cleanly(res, c, "2 --point and 1 --out given")
    res = script("theory", "--point", point.to_json(), "--out", str(c),
                 "--point", other.to_json(), "--out", str(c))  # fmt: skip
    _fails_cleanly(res, c, "same file")


def test_stage_jobs_over_a_batch_of_shards_equal_one_job_per_shard(chain, tmp_path):
    """Each shard stage with its options repeated (a batch of shards, as the workflow runs
    them) writes for each shard what a job of its own writes; an option given more or
    fewer times than the others is refused before any work, and nothing is written."""
    _, point, f = chain
    cfg = load_config(ROOT / "tests" / "configs" / "tiny.yaml")
    other = expand_study("tiny", cfg["studies"]["tiny"])[1]
    b = {s: [tmp_path / f"{s}{i}.nc" for i in (0, 1)] for s in f if s != "theory"}

    def run(name, *args):
        res = script(name, *args)
        assert res.returncode == 0, (name, res.stderr)

    run("simulate", *[a for q, o in zip((point, other), b["simulate"], strict=True)
                      for a in ("--point", q.to_json(), "--out", str(o))])  # fmt: skip
    for stage, before in (("pretrain", "simulate"), ("align", "pretrain")):
        pairs = [("--in", str(b[before][i]), "--out", str(b[stage][i])) for i in (0, 1)]
        run(stage, *[a for pair in pairs for a in pair])
    run("downstream", *[a for i in (0, 1) for a in ("--align", str(b["align"][i]), "--simulate",
        str(b["simulate"][i]), "--out", str(b["downstream"][i]))])  # fmt: skip
    for stage in b:  # the first shard of the batch: the chain's own files, bit for bit
        got, want = load_nc(b[stage][0]), load_nc(f[stage])
        xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    solo = {s: tmp_path / f"solo_{s}.nc" for s in b}
    run("simulate", "--point", other.to_json(), "--out", str(solo["simulate"]))
    run("pretrain", "--in", str(solo["simulate"]), "--out", str(solo["pretrain"]))
    run("align", "--in", str(solo["pretrain"]), "--out", str(solo["align"]))
    run("downstream", "--align", str(solo["align"]), "--simulate", str(solo["simulate"]),
        "--out", str(solo["downstream"]))  # fmt: skip
    for stage in b:  # the second: what a job of its own writes
        got, want = load_nc(b[stage][1]), load_nc(solo[stage])
        xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    c = tmp_path / "c.nc"
    res = script("pretrain", "--in", str(b["simulate"][0]), "--in", str(b["simulate"][1]),
                 "--out", str(c))  # fmt: skip
    _fails_cleanly(res, c, "2 --in and 1 --out given")
    d = str(tmp_path / "d.nc")
    res = script("simulate", "--point", point.to_json(), "--point", other.to_json(),
                 "--replicates", "0:10", "--out", str(c), "--out", d)  # fmt: skip
    _fails_cleanly(res, c, "2 --point and 1 --replicates and 2 --out given")
    assert not (tmp_path / "d.nc").exists()
    res = script("downstream", "--align", str(b["align"][0]), "--align", str(b["align"][1]),
                 "--simulate", str(b["simulate"][1]), "--simulate", str(b["simulate"][0]),
                 "--out", str(c), "--out", str(tmp_path / "d.nc"))  # fmt: skip
    assert res.returncode != 0 and "different points" in res.stderr
