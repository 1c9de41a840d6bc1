"""Short runs on real data (scikit-learn's handwritten digits, 5 experiences x 2 classes) with
the tiny random-weight backbone: training, replay and evaluation behave sensibly.

Numbers from a random backbone are not comparable with the paper's; these tests check
orderings that must hold for any sound implementation, measured on a real stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from alta import CrossModalLearner, LoopConfig, MemoryBuffer, ScenarioStream, build_optimizer, metrics, run_stream

EPOCHS = 10


@pytest.fixture(scope="module")
def digits():
    return ScenarioStream.from_name("digits", resolution=32)


def run(stream, backbone, method, buffer_size):
    learner = CrossModalLearner(backbone, class_names=stream.class_names, method=method)
    optimizer, scheduler = build_optimizer(learner, epochs=EPOCHS)
    buffer = MemoryBuffer(buffer_size, seed=0) if buffer_size else None
    return run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer,
                      loop=LoopConfig(epochs=EPOCHS, eval_every=0, seed=0, train_cache="fixed"))


@pytest.fixture(scope="module")
def alta_runs(digits, tiny_clip):
    return {size: run(digits, tiny_clip, "alta", size) for size in (0, 200)}


def test_each_experience_is_learned(alta_runs):
    R = alta_runs[0].class_il
    assert np.diag(R).min() > 80.0  # every experience is learned well when it is trained


def test_task_il_is_never_below_class_il(alta_runs):
    for result in alta_runs.values():
        lower = np.tril_indices(result.class_il.shape[0])
        assert (result.task_il[lower] >= result.class_il[lower] - 1e-9).all()


def test_replay_reduces_forgetting(alta_runs):
    without, with_buffer = alta_runs[0], alta_runs[200]
    f_without = metrics.forgetting(without.class_il)
    f_with = metrics.forgetting(with_buffer.class_il)
    assert f_with < f_without - 20.0, (f_with, f_without)
    assert metrics.last_accuracy(with_buffer.class_il) > metrics.last_accuracy(without.class_il) + 20.0


def test_prompt_snapshots_keep_task_il_of_old_experiences(digits, tiny_clip):
    """cprompt trains only the context, and ending an experience freezes its classes' prompts;
    the image features are frozen too, so task-IL accuracy on old experiences cannot change."""
    result = run(digits, tiny_clip, "cprompt", 0)
    R = result.task_il
    for k in range(R.shape[0]):
        np.testing.assert_allclose(R[k:, k], R[k, k])
    assert metrics.forgetting(result.class_il) > 0  # class-IL still forgets: new classes compete
