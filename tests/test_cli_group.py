"""`alta run --method a,b --buffer-size x,y`: one run group, a folder per run, resumable as a group."""

from __future__ import annotations

import json

from alta.cli import main

QUICK = ["--epochs", "1", "--eval-every", "0", "--train-cache", "fixed", "--set", "data.max_train_per_class=8",
         "--set", "data.max_test_per_class=4", "--no-plots", "-q"]
KEYS = ("accuracy_matrix", "avg_accuracy", "last_accuracy", "forgetting", "method", "buffer_size", "train_steps")


def test_several_methods_and_buffer_sizes_run_as_one_group_and_resume(tmp_path, capsys):
    root = tmp_path / "group"
    code = main(["run", "--method", "alta,mlp", "--buffer-size", "20,40", "--output-dir", str(root),
                 "--stop-after", "2", *QUICK])
    assert code == 0
    out = capsys.readouterr().out
    assert "stopped after 2 of 5 experiences" in out and f"alta run --resume {root}" in out
    names = json.loads((root / "group.json").read_text())["members"]
    assert names == ["oritext_mlp2cprompt_oriimg-buffer20", "oritext_mlp2cprompt_oriimg-buffer40", "mlp-buffer20",
                     "mlp-buffer40"]
    assert not any((root / n / "summary.json").exists() for n in names)
    assert main(["run", "--resume", str(root), "-q", "--no-plots"]) == 0
    capsys.readouterr()
    summaries = {n: json.loads((root / n / "summary.json").read_text()) for n in names}
    assert all(s["group"]["size"] == 4 for s in summaries.values())
    assert [s["buffer_size"] for s in summaries.values()] == [20, 40, 20, 40]
    # a member gives what its own `alta run` gives
    alone = tmp_path / "alone"
    assert main(["run", "--method", "mlp", "--buffer-size", "40", "--output-dir", str(alone), *QUICK]) == 0
    single = json.loads((alone / "summary.json").read_text())
    assert {k: single[k] for k in KEYS} == {k: summaries["mlp-buffer40"][k] for k in KEYS}


def test_a_method_without_replay_runs_once_and_the_group_is_reported_by_member(tmp_path, capsys):
    root = tmp_path / "group"
    assert main(["run", "--method", "mlp,cprompt", "--buffer-size", "20,40", "--output-dir", str(root), *QUICK]) == 0
    out = capsys.readouterr().out
    names = json.loads((root / "group.json").read_text())["members"]
    assert names == ["mlp-buffer20", "mlp-buffer40", "cprompt"]  # cprompt has no buffer: one run, not two alike
    assert f"== the run group ({root}" in out
    table = out.split("== the run group", 1)[1]
    assert all(f"| {name} |" in table for name in names)
    assert main(["report", str(root)]) == 0
    report = capsys.readouterr().out
    assert [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ") and "---" not in line
            ][1:] == names
    summary = json.loads((root / "mlp-buffer40" / "summary.json").read_text())
    row = next(line for line in report.splitlines() if line.startswith("| mlp-buffer40 |"))
    assert f" {summary['last_accuracy']['class_il']:.1f} " in row.split("|")


def test_a_damaged_group_file_is_refused_by_resume_and_report_alike(tmp_path, capsys):
    root = tmp_path / "group"
    assert main(["run", "--method", "mlp,cprompt", "--output-dir", str(root), "--stop-after", "1", *QUICK]) == 0
    good = (root / "group.json").read_text()
    cases = {
        "not json {": "cannot read",
        '{"format": "other", "members": ["mlp", "cprompt"]}': "not an alta run-group file",
        '{"format": "alta.run-group"}': "'members' must be a non-empty list",
        '{"format": "alta.run-group", "members": []}': "'members' must be a non-empty list",
        '{"format": "alta.run-group", "members": "cprompt"}': "'members' must be a non-empty list",
        '{"format": "alta.run-group", "members": [1, 2]}': "is not a folder name",
        '{"format": "alta.run-group", "members": ["."]}': "is not a folder name",
        '{"format": "alta.run-group", "members": ["../x"]}': "is not a folder name",
        '{"format": "alta.run-group", "members": ["mlp", "mlp"]}': "listed twice",
    }
    for text, expected in cases.items():
        (root / "group.json").write_text(text)
        for argv in (["run", "--resume", str(root), "-q"], ["report", str(root)]):
            capsys.readouterr()
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2 and expected in err and "Traceback" not in err, (text, argv, err)
    (root / "group.json").write_text(good)
    capsys.readouterr()
    assert main(["report", str(root)]) == 2  # the members are not finished yet
    assert "the run is not finished" in capsys.readouterr().err


def test_repeated_values_in_a_group_are_refused(tmp_path, capsys):
    for flags, twice in ((["--method", "cprompt,sprompt", "--buffer-size", "20,20"], "--buffer-size names 20 twice"),
                         (["--method", "mlp,mlp"], "--method names mlp twice")):
        assert main(["run", *flags, "--output-dir", str(tmp_path / "g"), *QUICK]) == 2
        assert twice in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_an_interrupted_group_says_how_to_continue_and_continues_every_member(tmp_path, capsys, monkeypatch):
    """Ctrl-C in a run group printed only "alta: interrupted"; now the resume line, as a single run
    does, and the resume also runs the member the interrupted group never reached (zeroshot runs
    alone, after the group of alta and mlp)."""
    from alta.run import writers

    root = tmp_path / "group"
    save, calls = writers.Checkpointer.on_experience_end, []

    def interrupted(self, *, experience, result):
        save(self, experience=experience, result=result)
        calls.append(experience)
        if len(calls) == 2:  # both members checkpointed their first experience
            raise KeyboardInterrupt

    monkeypatch.setattr(writers.Checkpointer, "on_experience_end", interrupted)
    assert main(["run", "--method", "alta,mlp,zeroshot", "--output-dir", str(root), *QUICK]) == 130
    err = capsys.readouterr().err
    assert f"continue the group with:\n  alta run --resume {root}" in err
    monkeypatch.undo()
    assert main(["run", "--resume", str(root), "-q", "--no-plots"]) == 0
    names = json.loads((root / "group.json").read_text())["members"]
    assert all(json.loads((root / n / "summary.json").read_text())["complete"] for n in names)


def test_a_group_prints_progress_per_member_and_right_buffer_words(tmp_path, capsys):
    quick = [a for a in QUICK if a != "-q"]
    assert main(["run", "--method", "mlp,cprompt", "--buffer-size", "20,40", "--output-dir", str(tmp_path / "g"),
                 *quick]) == 0
    err = capsys.readouterr().err
    # cprompt has no buffer: one run, said so the right way round, and no buffer size named for it
    assert "method cprompt does not replay: one run for all the --buffer-size values" in err
    assert "one run for every --buffer-size" not in err
    assert "cprompt (cprompt, buffer off)" in err and "mlp-buffer20 (mlp, buffer 20)" in err
    assert "cprompt (buffer 200)" not in err
    for member in ("mlp-buffer20", "mlp-buffer40", "cprompt"):  # a line per evaluation, as a single run prints
        assert sum(line.startswith(f"[alta] {member}: experience ") and "class-IL" in line
                   for line in err.splitlines()) == 5
    assert "[alta] mlp-buffer20: loss = ce + 0.4 replay_ce + 0.4 replay_mse" in err
