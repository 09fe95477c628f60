"""The examples stay true: recipes load, the CI workflow and the Gradle snippet name real paths."""

import shlex
from pathlib import Path

import yaml

from edgekit.cli import EdgekitCLI
from edgekit.recipe import Recipe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_example_recipe_loads():
    recipes = sorted((EXAMPLES / "recipes").glob("*.yaml"))
    assert {p.name for p in recipes} >= {"demo.yaml", "ci_budget.yaml", "sweep.yaml"}
    for path in recipes:
        Recipe.load(path)
    assert Recipe.load(EXAMPLES / "recipes" / "demo.yaml") == Recipe.demo()
    assert len(Recipe.load(EXAMPLES / "recipes" / "sweep.yaml").candidates()) == 4


def _edgekit_steps(workflow: dict) -> list[list[str]]:
    steps = workflow["jobs"]["edgekit"]["steps"]
    return [shlex.split(s["run"]) for s in steps if "run" in s and "edgekit run" in s["run"]]


def test_github_actions_workflow_runs_a_real_recipe_with_junit():
    workflow = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    assert workflow["name"] and workflow["jobs"]["edgekit"]["runs-on"]
    # PyYAML reads the bare key `on` as True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert "push" in triggers and "pull_request" in triggers
    (argv,) = _edgekit_steps(workflow)
    assert argv[:2] == ["edgekit", "run"]
    recipe = EXAMPLES.parent / argv[2]
    assert recipe.is_file()
    Recipe.load(recipe)
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert set(opts) == {"--out", "--junit"}
    # The flags exist on the command.
    params = EdgekitCLI.run.__code__.co_varnames
    assert {"out", "junit"} <= set(params)
    assert opts["--junit"].startswith(opts["--out"])
    uses = [s.get("uses", "") for s in workflow["jobs"]["edgekit"]["steps"]]
    upload = next(s for s in workflow["jobs"]["edgekit"]["steps"]
                  if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == opts["--out"]
    assert any(u.startswith("actions/checkout") for u in uses)


def test_gradle_snippet_copies_the_artefact_the_ci_run_writes():
    gradle = (EXAMPLES / "android" / "build.gradle.kts").read_text()
    workflow = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    (argv,) = _edgekit_steps(workflow)
    out = dict(zip(argv[3::2], argv[4::2], strict=True))["--out"]
    mode = Recipe.load(EXAMPLES.parent / argv[2]).convert.mode
    assert f'"{out}/model_{mode}.tflite"' in gradle
    assert 'noCompress += "tflite"' in gradle
    assert "src/main/assets" in gradle
    assert gradle.count("{") == gradle.count("}")


def test_the_kws_recipe_is_the_one_bench_kws_measures():
    """examples/recipes/kws.yaml says BENCHMARKS.md's kws figures are its figures: the recipe's
    training and stages are bench/kws.py's row ``RECIPE_ROW`` at the recipe's epochs."""
    from module_by_path import load_module

    kws = load_module("bench_kws", EXAMPLES.parent / "bench" / "kws.py")
    example = Recipe.load(EXAMPLES / "recipes" / "kws.yaml")
    measured = kws._recipe(example.model, example.seed, example.train.epochs)
    measured["stages"] = kws._stage_lists(example.train.epochs)[kws.RECIPE_ROW]
    measured = Recipe.from_dict(measured)
    assert (example.data, example.train) == (measured.data, measured.train)
    assert example.stages == measured.stages
    assert example.convert.mode == measured.convert.mode
