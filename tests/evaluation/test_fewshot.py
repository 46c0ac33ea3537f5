"""k-shot examples: from the training split, seeded, never the test item itself."""
import subprocess
from pathlib import Path

import pytest

from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.prompts import instruction_prompt
from megapmc.evaluation.scoring import score_generate
from megapmc.evaluation.tasks import TASKS
from scripted_backend import ScriptedBackend


@pytest.fixture(scope="module")
def medmcqa(sample_dir):
    task = TASKS["medmcqa"]
    return task.load(sample_dir, "test").items, task.load(sample_dir, "train").items


def test_seeded_and_per_item(medmcqa):
    test, train = medmcqa
    a, b, c = FewShotSampler(train, 2, seed=1), FewShotSampler(train, 2, seed=1), FewShotSampler(train, 2, seed=2)
    draws = [[ex.id for ex in a.examples(it)] for it in test]
    assert draws == [[ex.id for ex in b.examples(it)] for it in test]  # reproducible
    assert draws != [[ex.id for ex in c.examples(it)] for it in test]  # the seed matters
    assert len({tuple(d) for d in draws}) > 1  # each item has its own draw
    # An item's examples do not depend on which other items are evaluated (--limit, order).
    assert [ex.id for ex in a.examples(test[3])] == draws[3]
    assert all(len(d) == 2 and len(set(d)) == 2 and set(d) <= {t.id for t in train} for d in draws)


def test_never_the_item_itself(medmcqa):
    _, train = medmcqa
    sampler = FewShotSampler(train, 3, seed=0)
    for item in train:  # a train split that holds the item: it must not be its own example
        assert item.question not in [ex.question for ex in sampler.examples(item)]
        assert len(sampler.examples(item)) == 3


def test_not_enough_training_items(medmcqa):
    _, train = medmcqa
    with pytest.raises(ValueError, match="--num-fewshot 4 needs at least 5 training items"):
        FewShotSampler(train, 4)
    assert FewShotSampler([], 0).prefix(train[0], str) == ""


def test_generation_examples_carry_pmc_llama_answers(medmcqa):
    test, train = medmcqa
    task = TASKS["medmcqa"]
    sampler = FewShotSampler(train, 1, seed=5)
    (result,) = score_generate(ScriptedBackend(["B"]), task, test[:1], sampler, 8)
    (ex,) = sampler.examples(test[0])
    expected_example = instruction_prompt(ex, task.instruction) + f"###Answer: OPTION {ex.gold_letter} IS CORRECT."
    assert result.prompt == expected_example + "\n\n" + instruction_prompt(test[0], task.instruction)


def test_task_specific_recipe_parses():
    script = Path(__file__).resolve().parents[2] / "examples" / "finetune_task_specific.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
