"""benchmarks/main_job.py's pure parts: the summary of a step's runs, the step selection, the section it renders
and where that section goes in the measurements page. Nothing here runs a command or a model."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.main_job import (BEGIN, END, STEP_BY_NAME, Machine, Run, StepResult, command_of, demo_paths,
                                 display_command, render_section, replace_section, select_steps)

MACHINE = Machine(cpu="AMD EPYC 9R14", avx512f=True, avx512_bf16=True, amx=False, cores=2,
                  date="2027-01-05 10:00 UTC", commit="abc1234", tools={"python": "3.11.7", "torch": "2.5.1"})


def result(seconds: list[float], goal: float | None = 10.0, codes: list[int] | None = None,
           peaks: list[float | None] | None = None, step: str = "verify_rerun") -> StepResult:
    codes = codes or [0] * len(seconds)
    peaks = peaks or [None] * len(seconds)
    return StepResult(step, "python -m verify --artifacts ARTIFACTS --report REPORT",
                      tuple(Run(s, c, p) for s, c, p in zip(seconds, codes, peaks)), goal)


def test_a_step_is_the_median_of_its_runs_against_its_goal():
    assert result([12.0, 8.0, 9.5]).median_s == 9.5
    assert result([12.0, 8.0, 9.5]).within_goal is True
    assert result([12.0, 11.0, 9.5]).within_goal is False
    assert result([10.0]).within_goal is True  # the goal is "<=", not "<"
    assert result([12.0, 8.0], goal=None).within_goal is None
    assert result([1.0, 3.0]).median_s == 2.0


def test_a_step_keeps_every_exit_code_and_its_largest_process():
    failed = result([5.0, 6.0, 7.0], codes=[0, 1, 0], peaks=[300.0, None, 512.5])
    assert failed.exit_codes == (0, 1, 0)
    assert failed.peak_mb == 512.5
    assert result([5.0]).peak_mb is None


def test_steps_are_chosen_by_name_and_run_in_their_order():
    assert [s.name for s in select_steps(None, selftest=False)] == [
        "convert_cold", "convert_rerun", "verify_no_timing_cold", "verify_cold", "verify_rerun"]
    assert [s.name for s in select_steps(None, selftest=True)][-1] == "selftest"
    assert [s.name for s in select_steps("verify_rerun, convert_cold", selftest=False)] == [
        "convert_cold", "verify_rerun"]
    with pytest.raises(ValueError, match="verify_warm"):
        select_steps("verify_warm", selftest=False)


def test_the_steps_say_what_makes_them_cold_or_a_rerun():
    by_name = STEP_BY_NAME
    assert by_name["convert_cold"].fresh_out and not by_name["convert_rerun"].fresh_out
    assert by_name["verify_cold"].clear_cache and by_name["verify_no_timing_cold"].clear_cache
    assert by_name["verify_rerun"].rerun and not by_name["verify_rerun"].clear_cache
    assert "--no-timing" in by_name["verify_no_timing_cold"].arguments
    assert by_name["selftest"].once


def test_a_rerun_repeats_the_verify_command_that_ran_last_else_the_main_job():
    rerun = STEP_BY_NAME["verify_rerun"]
    timed, untimed = STEP_BY_NAME["verify_cold"].arguments, STEP_BY_NAME["verify_no_timing_cold"].arguments
    assert command_of(rerun, ["convert_cold", "verify_no_timing_cold", "verify_cold"]) == timed
    assert command_of(rerun, ["verify_cold", "verify_no_timing_cold", "convert_rerun"]) == untimed
    assert command_of(rerun, ["convert_cold"]) == timed
    assert command_of(STEP_BY_NAME["convert_rerun"], ["convert_cold"]) == STEP_BY_NAME["convert_rerun"].arguments


def test_a_command_is_shown_with_the_zoo_as_given_and_the_other_paths_by_role():
    assert display_command(STEP_BY_NAME["convert_cold"].arguments, "zoo.yaml") == (
        "python -m converter zoo.yaml --out FRESH_FOLDER")
    assert display_command(STEP_BY_NAME["verify_no_timing_cold"].arguments, "zoo.yaml") == (
        "python -m verify --artifacts ARTIFACTS --report REPORT --no-timing")


def test_the_demo_files_are_the_zoo_paths_inside_the_demo_folder():
    zoo = {"defaults": {"input": {"shape": [3, 224, 224]}},
           "models": [{"name": "resnet18", "arch": "torchvision:resnet18"},
                      {"name": "lite", "images": "artifacts/demo/photos"},
                      {"name": "bees", "checkpoint": "artifacts/demo/checkpoint_14_epoch.pkl",
                       "images": "artifacts/demo/val", "calibration": {"images": "artifacts/demo/calibration"}},
                      {"name": "own", "images": "my_images", "calibration": {"max_images": 8}}]}
    root = Path("/zoo")
    assert demo_paths(zoo, root, root / "artifacts" / "demo") == [
        root / "artifacts/demo/photos", root / "artifacts/demo/checkpoint_14_epoch.pkl", root / "artifacts/demo/val",
        root / "artifacts/demo/calibration"]
    assert demo_paths({"models": [{"name": "own", "images": "../artifacts/demo/val"}]}, root,
                      root / "artifacts" / "demo") == []
    assert demo_paths({}, root, root / "artifacts" / "demo") == []


def test_the_section_names_the_machine_and_has_a_row_per_step():
    section = render_section([result([12.0, 8.0, 9.5], peaks=[400.0, 420.0, 410.0]),
                              result([30.0, 31.0, 29.0], goal=None, codes=[0, 1, 0], step="convert_cold")],
                             MACHINE, repeat=3)
    assert "AMD EPYC 9R14, 2 physical cores (avx512f yes, avx512_bf16 yes, amx no)" in section
    assert "2027-01-05 10:00 UTC" in section and "abc1234" in section
    assert "torch 2.5.1" in section and "the median of 3 runs:" in section
    assert "one run:" in render_section([result([1.0])], MACHINE, repeat=1)
    assert "| verify_rerun | 9.5 | 12.0, 8.0, 9.5 | <= 10 s | yes | 0, 0, 0 | 420 |" in section
    assert "| convert_cold | 30.0 | 30.0, 31.0, 29.0 |  |  | 0, 1, 0 |  |" in section
    assert "- verify_rerun: `python -m verify --artifacts ARTIFACTS --report REPORT`" in section
    assert BEGIN not in section and END not in section


DOCUMENT = """# Measurements

The intro.

- a list in the intro

## Main job and test suite

Older figures.
"""


def test_the_section_goes_in_after_the_intro_where_there_are_no_markers():
    written = replace_section(DOCUMENT, "## New\n\nfigures\n")
    assert written == ("# Measurements\n\nThe intro.\n\n- a list in the intro\n\n"
                       f"{BEGIN}\n## New\n\nfigures\n{END}\n\n## Main job and test suite\n\nOlder figures.\n")


def test_the_section_replaces_only_what_is_between_the_markers():
    placeholder = replace_section(DOCUMENT, "written by the benchmark")
    once = replace_section(placeholder, "## New\n\nfigures 1\n")
    twice = replace_section(once, "## New\n\nfigures 2\n")
    assert "figures 1" not in twice and "written by the benchmark" not in twice
    assert twice == replace_section(DOCUMENT, "## New\n\nfigures 2\n")
    assert twice.count(BEGIN) == 1 and twice.count(END) == 1
    assert twice.startswith("# Measurements\n\nThe intro.\n") and twice.endswith("Older figures.\n")


def test_another_benchmarks_section_goes_after_this_ones_never_inside_it():
    from benchmarks.repair import MARKERS

    ours = replace_section(DOCUMENT, "## New\n\nfigures\n")
    both = replace_section(ours, "## Repairs\n\nfound\n", MARKERS)
    assert both.index(END) < both.index(MARKERS[0]) < both.index("## Main job and test suite")
    assert replace_section(both, "## New\n\nfigures 2\n").count("found") == 1


def test_without_a_heading_the_section_goes_at_the_end():
    assert replace_section("# Title\nintro", "body") == f"# Title\nintro\n\n{BEGIN}\nbody\n{END}\n"
    assert replace_section("text\n", "body") == f"text\n\n{BEGIN}\nbody\n{END}\n"
    assert replace_section("", "body") == f"{BEGIN}\nbody\n{END}\n"
