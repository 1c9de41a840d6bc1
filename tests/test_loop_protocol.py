"""The loop depends on the Learner protocol, not on CrossModalLearner.

A linear probe on frozen image features, written here from the protocol alone (it is not ALTA),
goes through every part of the loop: the step, the loops with a feature cache, evaluation, a
run group, and a resume from its state dict; an object missing members is refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alta
from alta.errors import ConfigError
from alta.loop import check_learner
from alta.losses import StepLoss


class LinearProbe(nn.Module):
    """A linear classifier over frozen CLIP image features: the smallest learner of the protocol."""

    name = "linear_probe"
    trains = True
    replays = False
    replay_batch_size = 0

    def __init__(self, backbone, num_classes: int, *, seed: int = 0) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # frozen and shared: not a submodule
        torch.manual_seed(seed)
        self.head = nn.Linear(backbone.embed_dim, num_classes)
        self.num_classes = num_classes
        self.register_buffer("experience_index", torch.tensor(-1))
        self.register_buffer("class_to_experience", torch.full((num_classes,), -1))

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def begin_experience(self, experience) -> None:
        self.class_to_experience.copy_(torch.as_tensor(experience.class_to_experience))
        self.experience_index.fill_(int(experience.index))

    def end_experience(self, experience) -> None:
        pass

    def active_branches(self, schedule=None) -> frozenset[str]:
        return frozenset({"image"})

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"image": list(self.head.parameters())}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def _features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_images(inputs) if inputs.ndim == 4 else inputs.float()

    def loss(self, inputs, labels, *, memory=None, branches=None) -> StepLoss:
        features = self._features(inputs)
        logits = self.head(features)
        ce = F.cross_entropy(logits, labels)
        return StepLoss(loss=ce, terms={"ce": ce}, weights={"ce": 1.0}, counts={"ce": int(labels.shape[0])},
                        logits=logits.detach(), image_features=features.detach(), labels=labels,
                        experience_ids=self.class_to_experience[labels])

    def classifier(self):
        return lambda inputs: self.head(self._features(inputs))

    def check_buffer(self, buffer) -> None:
        pass


def _probe_run(backbone, stream, *, callbacks=(), result=None, start_experience=0, state=None):
    learner = LinearProbe(backbone, stream.num_classes)
    if state is not None:
        learner.load_state_dict(state["learner"])
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.5)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    loop = alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed", seed=3)
    out = alta.run_stream(learner, stream, optimizer=optimizer, loop=loop, callbacks=list(callbacks), result=result,
                          start_experience=start_experience)
    return out, learner, optimizer


def test_a_learner_written_from_the_protocol_trains_and_is_evaluated(tiny_clip):
    stream = alta.ScenarioStream.from_name("digits", resolution=tiny_clip.input_resolution, num_experiences=2)
    learner = LinearProbe(tiny_clip, stream.num_classes)
    assert isinstance(learner, alta.Learner)
    result, learner, _ = _probe_run(tiny_clip, stream)
    assert result.class_il.shape == (2, 2) and not np.isnan(np.diag(result.class_il)).any()
    assert [r["experience"] for r in result.evaluations] == [0, 0, 1, 1]
    assert all(set(h) >= {"loss", "ce", "train_accuracy"} for h in sum(result.history, []))
    final = alta.evaluate(learner, list(stream))
    assert final.class_il == tuple(result.class_il[-1])
    # the step alone, on images, with a buffer it does not use
    x, y = stream[0].train[0][0].unsqueeze(0), torch.tensor([0])
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.1)
    stats = alta.train_step(learner, x, y, optimizer=optimizer, buffer=alta.MemoryBuffer(5, seed=0))
    assert set(stats) == {"loss", "ce", "correct"}


def test_a_protocol_learner_resumes_from_its_state_and_groups_bit_identically(tiny_clip):
    stream = alta.ScenarioStream.from_name("digits", resolution=tiny_clip.input_resolution, num_experiences=2)
    full, _, _ = _probe_run(tiny_clip, stream)

    captured = {}

    class Stop(alta.Callback):
        def __init__(self, objects):
            self.objects = objects

        def on_experience_end(self, *, experience, result):
            captured.update(learner={k: v.clone() for k, v in self.objects[0].state_dict().items()},
                            optimizer=self.objects[1].state_dict(), result=result)
            raise KeyboardInterrupt

    learner = LinearProbe(tiny_clip, stream.num_classes)
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.5)
    with pytest.raises(KeyboardInterrupt):
        alta.run_stream(learner, stream, optimizer=optimizer, callbacks=[Stop((learner, optimizer))],
                        loop=alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed", seed=3))
    resumed, _, _ = _probe_run(tiny_clip, stream, result=captured["result"], start_experience=1, state=captured)
    np.testing.assert_array_equal(resumed.class_il, full.class_il)

    members = [alta.GroupMember(p, optimizer=torch.optim.SGD(p.trainable_parameters(), lr=0.5), name=f"probe{i}")
               for i, p in enumerate([LinearProbe(tiny_clip, stream.num_classes) for _ in range(2)])]
    grouped = alta.run_group(members, stream, loop=alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed",
                                                                   seed=3))
    for result in grouped:
        np.testing.assert_array_equal(result.class_il, full.class_il)


def test_an_object_missing_members_of_the_protocol_is_refused_by_name(tiny_clip):
    class Half(nn.Module):
        def loss(self, inputs, labels):
            return inputs.sum()

    with pytest.raises(ConfigError, match="lacks .*classifier.*alta.loop.Learner"):
        check_learner(Half())
    stream = alta.ScenarioStream.from_name("digits", resolution=tiny_clip.input_resolution)
    with pytest.raises(ConfigError, match="begin_experience"):
        alta.run_stream(Half(), stream, optimizer=torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    with pytest.raises(ConfigError, match="not a learner"):
        alta.evaluate(Half(), stream[0])
