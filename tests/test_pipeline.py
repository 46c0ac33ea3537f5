import sys

import pytest

from megapmc.pipeline import Step, StepFailed, run_steps


def _py(code):
    return [sys.executable, "-c", code]


def test_steps_run_in_order_and_are_reused(tmp_path, capsys):
    out = tmp_path / "out.txt"
    steps = [
        Step("a", "first", [_py(f"open({str(out)!r}, 'a').write('a')")]),
        Step("b", "second", [_py(f"open({str(out)!r}, 'a').write('b')")]),
    ]
    run_steps(steps, tmp_path / "run", cwd=tmp_path)
    run_steps(steps, tmp_path / "run", cwd=tmp_path)
    assert out.read_text() == "ab"
    assert "reusing" in capsys.readouterr().out


def test_changed_step_redoes_it_and_the_rest(tmp_path):
    out = tmp_path / "out.txt"
    a = Step("a", "first", [_py(f"open({str(out)!r}, 'a').write('a')")])
    b = Step("b", "second", [_py(f"open({str(out)!r}, 'a').write('b')")])
    run_steps([a, b], tmp_path / "run", cwd=tmp_path)
    a2 = Step("a", "first", [_py(f"open({str(out)!r}, 'a').write('A')")])
    run_steps([a2, b], tmp_path / "run", cwd=tmp_path)
    assert out.read_text() == "abAb"


def test_failure_names_step_and_log_and_stops(tmp_path):
    out = tmp_path / "out.txt"
    steps = [
        Step("bad", "breaks", [_py("import sys; print('boom'); sys.exit(3)")]),
        Step("after", "never runs", [_py(f"open({str(out)!r}, 'w').write('x')")]),
    ]
    with pytest.raises(StepFailed, match=r"(?s)step .bad.*exit code 3.*logs/bad.log"):
        run_steps(steps, tmp_path / "run", cwd=tmp_path)
    assert not out.exists()
    assert "boom" in (tmp_path / "run" / "logs" / "bad.log").read_text()
    assert not (tmp_path / "run" / ".steps" / "bad.done").exists()


def test_changed_inputs_clear_outputs_but_an_interrupted_step_resumes(tmp_path):
    ckpt = tmp_path / "ckpt"
    # "Training" resumes from what it finds in ckpt/, as the trainers do.
    train = _py(f"import os; os.makedirs({str(ckpt)!r}, exist_ok=True); "
                f"open(os.path.join({str(ckpt)!r}, 'log'), 'a').write('step;')")
    data = Step("data", "data", [_py("pass")])
    run_dir = tmp_path / "run"
    run_steps([data], run_dir, cwd=tmp_path)
    ckpt.mkdir()
    (ckpt / "log").write_text("interrupted;")  # a previous run died in "train", before its marker
    run_steps([data, Step("train", "train", [train], outputs=[ckpt])], run_dir, cwd=tmp_path)
    assert (ckpt / "log").read_text() == "interrupted;step;"  # resumed, nothing deleted

    data2 = Step("data", "data", [_py("print('new data')")])
    run_steps([data2, Step("train", "train", [train], outputs=[ckpt])], run_dir, cwd=tmp_path)
    assert (ckpt / "log").read_text() == "step;"  # inputs changed: old checkpoints gone
