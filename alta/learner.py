"""ALTA's learner: frozen CLIP, a learned prompt snapshotted per experience, an image adapter,
crossed image/text pairing and feature replay.

Implements Li, Gao, Xia, Wang, Liu, Liu, Wang, Zheng, "Cross-Modal Alternating Learning with
Task-Aware Representations for Continual Learning", IEEE Transactions on Multimedia 2023
(reference code: github.com/vijaylee/ALTA), and the nine method variants of that code
(:mod:`alta.methods`).

The four representations (the paper's method figure and its reference code):

- f1, task-invariant image representation: frozen CLIP image feature, (B, D);
- f2, task-aware image representation: ``adapter(f1)``, adapter = Linear(D, D/16) -> ReLU ->
  Linear(D/16, D);
- w1, task-invariant text representation: frozen feature of "a photo of a {class}", (C, D);
- w2, task-aware text representation: feature of the learned prompt
  ``[SOS][ctx_1..ctx_4][class][.][EOS]`` (CoOp), (C, D).

ALTA's logits are ``s*cos(f1, w2) + s*cos(f2, w1)``. A backbone with a learned logit bias b
(SigLIP: the library's logits are ``s*cos + b``) adds b to each term, so that every term is the
library's own logit of its image/text pair and the zero-shot logits equal the library's: the crossed
pairing scores ``(s*cos(f1, w2) + b) + (s*cos(f2, w1) + b)``. The bias is the same for every class,
so it shifts a row of logits by a constant: softmax, cross-entropy, accuracy and the replay MSE
(both logits carry it) are unchanged; it stays in the logits a run reports and the buffer stores.
When an experience ends, the prompts of its
classes are frozen (prompt snapshot, reference ``MyPromptLearner``); because the text encoder is frozen too, their
features are computed once at that moment and reused (an exact saving). The hand-written
features w1 are computed once per run. At every training step the learned-prompt features of
the classes still learning are computed once and shared by the current batch and the replay
batch.

The loss (DER++ in feature space; Buzzega et al., NeurIPS 2020) is
``CE(z, y) + alpha * CE(z_b, y_b) + beta * MSE(z_b, z_b_stored)`` with (y_b, f1_b, z_b_stored)
drawn from a :class:`~alta.buffer.MemoryBuffer` and ``z_b`` recomputed from ``f1_b``.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, backbone_option, check_backbone, load_backbone
from .config import (
    default_of,
)
from .errors import ConfigError, ShapeError, StateError
from .learner_config import NO_LOSS_TERMS, LearnerConfig
from .learner_state import check_saved_state, hash64, name_hashes
from .losses import CrossEntropy, LossInputs, ReplayCrossEntropy, ReplayMSE, StepLoss, extra_loss_terms, step_loss
from .methods import MethodSpec, get_method
from .prompt import PromptLearner, check_class_names, check_class_templates, hand_written_features
from .replay import check_buffer_fields, check_memory
from .schedule import AlternatingSchedule
from .snapshots import PromptSnapshots, TextFeatures

__all__ = ["CrossModalLearner", "TextFeatures"]

logger = logging.getLogger(__name__)



def _adapter(dim: int, reduction: int) -> nn.Sequential:
    hidden = max(1, dim // reduction)
    return nn.Sequential(
        OrderedDict(
            [("linear1", nn.Linear(dim, hidden)), ("relu", nn.ReLU(inplace=True)), ("linear2", nn.Linear(hidden, dim))]
        )
    )


class CrossModalLearner(PromptSnapshots, nn.Module):
    """ALTA and its variants on a frozen CLIP backbone, driven from your own loop.

    Args:
        backbone: A frozen backbone: anything implementing the
            :class:`~alta.backbones.Backbone` protocol, e.g. from :func:`~alta.load_backbone`
            (clip-anytorch, ``open_clip:`` and ``hf:`` names), or use :meth:`from_pretrained`.
        class_names: One human-readable name per class of the stream, in label order
            (``stream.class_names``). C = len(class_names).
        method: A method of :func:`alta.list_methods` (``"alta"`` is the default
            ``"oritext_mlp2cprompt_oriimg"``).
        head: ``"all"``: logits cover every class of the stream from the first experience on
            (the paper's protocol); ``"seen"``: classes not yet begun get logit ``-inf``.
        alpha: Weight of the replay cross-entropy (the DER++ replay term of the loss).
        beta: Weight of the replay logit-matching MSE.
        replay_batch_size: Items drawn from the buffer per step (32 in the reference code).
        ctx_init: Words initialising the context vectors (their count is the number of vectors).
        template: Hand-written prompt for w1, with one ``{}`` for the class name.
        adapter_reduction: Adapter bottleneck: D -> D / reduction -> D (16 in the paper).
        seed: Seed of the adapter's initial weights.
        truncate_text: Run the text encoder only up to the longest EOT position (exact). Set
            ``False`` to reproduce the reference's full 77-token encoding.
        snapshot_timing: Which context a prompt snapshot keeps: ``"end"`` (default), the context
            after the experience's final optimiser step; or ``"last_forward"``, the prompts of
            the last training forward, i.e. the context *before* the final step, which is what
            the reference code snapshots.
        w1_raw_names: Build the hand-written prompts w1 from ``class_names`` exactly as given,
            underscores kept ("a photo of a aquarium_fish"), as the reference code does; the
            learned prompt always reads underscores as spaces. Default ``False``: readable names
            in both prompts.
        loss_terms: Loss terms added to the method's own three (``ce``, ``replay_ce``,
            ``replay_mse``; :mod:`alta.losses`): term objects, or ``{name: options}`` of
            :data:`alta.losses.LOSS_TERMS`. A term with state (buffers) is checkpointed with the
            learner (its ``state_dict``, under ``extra_terms.<name>.``).
        unseen_classes: How classes of experiences not begun yet are scored (``head="all"``):
            ``"learned"`` (the method's logits) or ``"zeroshot"`` (``n * s*cos(f1, w1)`` for a
            method of n terms; their prompts are then not encoded before their experience).
        class_templates: Per class, the prompt templates whose text features are averaged into
            w1 (each feature L2-normalised, the mean normalised again: open_clip's zero-shot
            classifier, ``build_zero_shot_classifier``), e.g. each dataset's template ensemble in
            a multi-domain stream (``stream.class_templates``); ``None`` (for all, or for one
            class): ``template``.
        class_domains: The domain (dataset) of every class, or ``None``: names must then be
            distinct within a domain only (``stream.class_to_experience`` of a multi-domain
            stream, where "river" may be a class of two datasets).

    Raises:
        ConfigError: a backbone missing members of the protocol (named in the message), unknown
            method or head, a method that is a learner plug-in, empty or duplicated class names,
            bad weights, a loss term named like one of the method's.
        PluginError: a loss term that does not follow the protocol.

    Shape:
        ``forward(images)``: images (B, 3, R, R) -> logits (B, C).
        ``logits_from_features(f1)``: f1 (B, D) -> logits (B, C).

    Examples:
        >>> learner = CrossModalLearner.from_pretrained(
        ...     "tiny-vit", class_names=["cat", "dog"], method="alta")  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        class_names: Sequence[str],
        method: str = LearnerConfig.method,
        head: str = LearnerConfig.head,
        alpha: float = LearnerConfig.alpha,
        beta: float = LearnerConfig.beta,
        replay_batch_size: int = LearnerConfig.replay_batch_size,
        ctx_init: str = LearnerConfig.ctx_init,
        template: str = LearnerConfig.template,
        adapter_reduction: int = LearnerConfig.adapter_reduction,
        seed: int = 0,
        truncate_text: bool = LearnerConfig.truncate_text,
        snapshot_timing: str = LearnerConfig.snapshot_timing,
        w1_raw_names: bool = LearnerConfig.w1_raw_names,
        loss_terms: Mapping[str, Any] | Sequence[Any] = NO_LOSS_TERMS,
        unseen_classes: str = LearnerConfig.unseen_classes,
        class_templates: Sequence[Sequence[str] | None] | None = None,
        class_domains: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_backbone(backbone)
        by_name = isinstance(loss_terms, Mapping)
        options = LearnerConfig(method=method, head=head, alpha=alpha, beta=beta, replay_batch_size=replay_batch_size,
                                ctx_init=ctx_init, template=template, adapter_reduction=adapter_reduction,
                                truncate_text=truncate_text, snapshot_timing=snapshot_timing,
                                w1_raw_names=w1_raw_names, unseen_classes=unseen_classes,
                                loss_terms=loss_terms if by_name else {})  # validates each once
        spec = get_method(options.method)
        if not isinstance(spec, MethodSpec):
            raise ConfigError(f"method {spec.name!r} is a learner plug-in, not a variant of CrossModalLearner; build "
                              f"its learner with its factory (alta.methods.get_method({spec.name!r}).build)")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        groups = (None if class_domains is None  # the dataset of every class: names distinct within one
                  else [int(d) for d in torch.as_tensor(class_domains).reshape(-1).tolist()])
        names = check_class_names(class_names, groups=groups)

        self.backbone = backbone
        self.method: MethodSpec = spec
        self.class_names = names
        self.head = head
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.replay_batch_size = replay_batch_size
        self.template = template
        self.truncate_text = bool(truncate_text)
        self.snapshot_timing = snapshot_timing
        self.w1_raw_names = w1_raw_names
        self.unseen_classes = unseen_classes
        self.seed = seed
        device = backbone.device
        num_classes, dim = len(names), backbone.embed_dim

        # w1: computed once per run (the text encoder is frozen).
        w1_names = list(class_names) if w1_raw_names else names  # raw: the reference's text_input
        self.class_templates = check_class_templates(class_templates, num_classes)
        self.register_buffer("w1", hand_written_features(backbone, w1_names, template=template,
                                                         class_templates=self.class_templates, groups=groups),
                             persistent=False)  # (C, D)

        self.prompt_learner = PromptLearner(backbone, names, ctx_init=ctx_init, groups=groups) if spec.uses_prompt \
            else None
        if spec.uses_adapter:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.adapter = _adapter(dim, adapter_reduction).to(device)
        else:
            self.adapter = None
        # The loss, term by term (alta.losses): the method's own, then the extra ones.
        self._method_terms = (CrossEntropy(), ReplayCrossEntropy(weight=self.alpha),
                              ReplayMSE(weight=self.beta, seen_only=head == "seen"))
        self._extra_terms = extra_loss_terms(options.loss_terms if by_name else loss_terms, method=self._method_terms)
        if any(isinstance(t, nn.Module) for t in self._extra_terms):  # their state (buffers) is the learner's
            modules = {t.name: t for t in self._extra_terms if isinstance(t, nn.Module)}
            self.extra_terms = nn.ModuleDict(modules).to(device)

        # Prompt snapshots: normalised w2 of frozen classes, cached once.
        self.register_buffer("snapshot_features", torch.zeros(num_classes, dim, device=device))  # (C, D)
        self.register_buffer("snapshotted", torch.zeros(num_classes, dtype=torch.bool, device=device))  # (C,)
        # Stream position.
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool, device=device))  # (C,)
        self.register_buffer("class_to_experience", torch.full((num_classes,), -1, dtype=torch.long, device=device))
        self.register_buffer("experience_index", torch.tensor(-1, dtype=torch.long, device=device))
        # Classes trained on before their experience began, recorded on the device for labels
        # checked without a host-device sync (CUDA) and reported at the next experience boundary.
        self.register_buffer("_trained_unbegun", torch.zeros(num_classes, dtype=torch.bool, device=device),
                             persistent=False)  # (C,)
        # What a saved state must match: the class names (in label order) and the backbone weights.
        self.register_buffer("class_name_hashes", name_hashes(names).to(device))  # (C,)
        self.register_buffer("backbone_hash", torch.tensor(hash64(backbone.fingerprint()), device=device))
        self._warned_no_replay = False
        self._last_forward_w2: torch.Tensor | None = None  # (C, D), for snapshot_timing="last_forward"
        self._refresh()

    def _refresh(self) -> None:
        """Recompute what changes only at experience boundaries, so the per-step path needs no
        data-dependent shapes (no host-device synchronisation on CUDA)."""
        mask = self.head_mask()
        if self.unseen_classes == "zeroshot":  # scored zero-shot until their experience begins
            mask = mask & self.seen
        if self.method.snapshot:
            mask = mask & ~self.snapshotted
        self._learning_ids = mask.nonzero().squeeze(1)  # (N,) on the learner's device
        self._seen_cpu = self.seen.detach().cpu()
        self._all_begun = bool(self._seen_cpu.all())  # no zero-shot scores to mix in (a host flag: no sync)

    # ================================================================ construction
    @classmethod
    def from_pretrained(
        cls,
        visual: str,
        *,
        class_names: Sequence[str],
        pretrained: str | bool | None = None,
        device: str | torch.device | None = "cpu",
        precision: str = default_of(load_backbone, "precision"),
        download_root: str | None = default_of(load_backbone, "download_root"),
        download: bool = default_of(load_backbone, "download"),
        backbone_seed: int = default_of(load_backbone, "seed"),
        **options: Any,
    ) -> "CrossModalLearner":
        """Load a CLIP backbone by name or file and build a learner on it.

        Args:
            visual: Backbone name (``RN50``, ``ViT-B/16``, ``tiny-vit``, ``open_clip:ViT-B-16``,
                ``hf:<id or folder>``, ...) or a local checkpoint path; see :func:`alta.load_backbone`.
            class_names: Class names of the stream, in label order.
            pretrained: Weights of ``open_clip:``/``hf:`` backbones (a tag, a file, or ``None``/
                ``False``; see :func:`alta.load_backbone`).
            device: Where the learner lives (``None``: CUDA when available).
            precision: Precision of the frozen encoders (``"auto"``: fp16 on CUDA).
            download_root: Folder of pretrained weights (default ``~/.cache/clip``).
            download: Download missing pretrained weights (``False`` fails at once offline).
            backbone_seed: Seed of random-weight backbones.
            **options: The learner's own keyword arguments, as :class:`CrossModalLearner` takes
                them (``method``, ``head``, ``alpha``, ``beta``, ``replay_batch_size``,
                ``ctx_init``, ``template``, ``adapter_reduction``, ``seed``, ``truncate_text``,
                ``snapshot_timing``, ``w1_raw_names``), with its defaults.

        Raises:
            BackboneError: unknown backbone or weights unavailable offline.
            ConfigError: invalid method, head or options.
            TypeError: an option :class:`CrossModalLearner` does not take (checked before the
                backbone is loaded).
        """
        unknown = sorted(set(options) - _LEARNER_OPTIONS)
        if unknown:
            raise TypeError(f"CrossModalLearner.from_pretrained got unknown option(s) {unknown}; the learner takes "
                            f"{sorted(_LEARNER_OPTIONS)}")
        backbone = load_backbone(
            visual, pretrained=pretrained, device=device, precision=precision, download_root=download_root,
            download=download, seed=backbone_seed
        )
        return cls(backbone, class_names=class_names, **options)

    # ================================================================ properties
    @property
    def num_classes(self) -> int:
        """C, the number of classes of the stream."""
        return len(self.class_names)

    @property
    def embed_dim(self) -> int:
        """D, the joint embedding dimension."""
        return self.backbone.embed_dim

    @property
    def input_resolution(self) -> int:
        """Image size in pixels the backbone expects."""
        return self.backbone.input_resolution

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def logit_scale(self) -> float:
        """s = exp(CLIP logit_scale), frozen."""
        return self.backbone.logit_scale

    @property
    def logit_bias(self) -> float | None:
        """b, the backbone's frozen learned logit bias (SigLIP), added to every term; ``None``: none."""
        return backbone_option(self.backbone, "logit_bias")

    @property
    def name(self) -> str:
        """The method's name (``oritext_mlp2cprompt_oriimg`` for ALTA), for messages and records."""
        return self.method.name

    @property
    def replays(self) -> bool:
        """Whether a training step replays a memory and offers its batch to the buffer."""
        return self.method.replay

    @property
    def trains(self) -> bool:
        """Whether the method has parameters to train (``zeroshot`` has none)."""
        return self.method.trains

    @property
    def loss_terms(self) -> tuple:
        """The terms of :meth:`loss`, in order: ``ce``, ``replay_ce``, ``replay_mse``, then the extra ones."""
        return (*self._method_terms, *self._extra_terms)

    def check_buffer(self, buffer) -> None:
        """Refuse a buffer filled with other fields than ALTA replay stores
        (:data:`alta.replay.REPLAY_FIELDS`, and the fields of the extra loss terms).

        Raises:
            ShapeError: the buffer holds other fields.
        """
        check_buffer_fields(buffer.fields, extra=[f for t in self._extra_terms for f in t.stores])

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by branch: ``{"text": [ctx], "image": adapter params}``.

        Only branches the method trains are present; the backbone never appears.
        """
        groups: dict[str, list[nn.Parameter]] = {}
        if self.prompt_learner is not None:
            groups["text"] = [self.prompt_learner.ctx]
        if self.adapter is not None:
            groups["image"] = list(self.adapter.parameters())
        return groups

    def trainable_parameters(self) -> list[nn.Parameter]:
        """All trainable parameters (context vectors and adapter), for the optimizer."""
        return [p for params in self.branch_parameters().values() for p in params]

    def num_trainable_parameters(self) -> int:
        """Number of trainable scalars (RN50 ALTA: 2,048 ctx + 132,160 adapter)."""
        return sum(p.numel() for p in self.trainable_parameters())

    def train(self, mode: bool = True) -> "CrossModalLearner":
        super().train(mode)
        self.backbone.train(False)  # frozen encoders always in eval mode
        return self

    # ================================================================ experiences
    def begin_experience(self, experience) -> None:
        """Start an experience: its classes become seen (and enter the head for ``head="seen"``).

        Args:
            experience: An :class:`~alta.data.Experience` (``index``, ``classes``,
                ``class_to_experience``).

        Raises:
            ConfigError: if the experience's stream has a different number of classes, or names
                its classes differently (another stream or class order).
        """
        mapping = torch.as_tensor(experience.class_to_experience, dtype=torch.long)
        if mapping.shape != (self.num_classes,):
            raise ConfigError(
                f"the experience belongs to a stream of {mapping.numel()} classes but this learner was built "
                f"for {self.num_classes} (class_names); build the learner with stream.class_names"
            )
        classes = torch.as_tensor(list(experience.classes), dtype=torch.long)
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise ConfigError(f"experience classes {classes.tolist()} are outside [0, {self.num_classes})")
        self._raise_trained_unbegun(f"begin_experience({experience.index})")
        names = getattr(experience, "class_names", None)
        if names is not None:
            mine = [self.class_names[c] for c in classes.tolist()]
            theirs = check_class_names(list(names))  # the same normalisation as the learner's own names
            if mine != theirs:
                raise ConfigError(
                    f"experience {experience.index} calls its labels {classes.tolist()} {theirs}, but this learner "
                    f"calls them {mine}: the learner was built for another stream or class order; build it with "
                    f"class_names=stream.class_names of this stream. To give the stream readable names (e.g. for "
                    f"WordNet-id folders), pass class_names= (a list, a file, or a 'folder<TAB>name' map) to "
                    f"ScenarioStream.from_name or to the ScenarioStream constructor"
                )
        self.class_to_experience.copy_(mapping.to(self.device))
        self.seen[classes.to(self.device)] = True
        self.experience_index.fill_(int(experience.index))
        self._last_forward_w2 = None
        self._refresh()

    @torch.no_grad()
    def end_experience(self, experience) -> None:
        """End an experience: snapshot the prompts of its classes (methods with snapshots).

        The features of a snapshotted class are computed once here, from the current context
        (or, with ``snapshot_timing="last_forward"``, taken from the last training forward), and
        stay bit-identical for the rest of the run (task-aware text representations).
        ``sprompt`` never snapshots; methods without a prompt have nothing to freeze.

        Args:
            experience: The :class:`~alta.data.Experience` that ends.

        Raises:
            StateError: if the experience's classes were never begun, or if the experience
                trained on labels of classes whose experience had not begun (labels on a
                CUDA device are checked here rather than at every step, which would cost a
                host-device sync each time).
        """
        classes = torch.as_tensor(list(experience.classes), dtype=torch.long, device=self.device)
        if classes.numel() and not bool(self.seen[classes].all()):
            raise StateError(
                f"end_experience called for experience {experience.index}, whose classes {classes.tolist()} were "
                f"never begun; call learner.begin_experience(experience) and train on it first"
            )
        self._raise_trained_unbegun(f"end_experience({experience.index})")
        if not (self.method.snapshot and self.prompt_learner is not None):
            return
        self.snapshot_prompts(classes)

    def _raise_trained_unbegun(self, where: str) -> None:
        """Raise for classes that :meth:`_check_labels` recorded on the device as trained on before
        their experience began (one host-device sync, at an experience boundary)."""
        if not bool(self._trained_unbegun.any()):
            return
        classes = self._trained_unbegun.nonzero().squeeze(1).tolist()
        self._trained_unbegun.zero_()
        raise StateError(
            f"{where}: the learner was trained on labels {classes[:5]}{' ...' if len(classes) > 5 else ''} of classes "
            f"whose experience had not begun (a data leak from a later experience?); call "
            f"learner.begin_experience(experience) for the experience of those labels before training on them"
        )

    def _require_experience(self, what: str) -> None:
        if int(self.experience_index) < 0 and self.method.branches:
            raise StateError(
                f"{what} called before any experience began; call learner.begin_experience(experience) "
                f"for the first experience of the stream first"
            )

    # ================================================================ features and logits
    def classifier(self):
        """A function from images (B, 3, R, R) or frozen image features (B, D) to logits (B, C)
        in the learner's current state, the text features computed once for all its calls (what
        :func:`alta.evaluate` scores with). Valid until the learner changes.

        Shape:
            the function maps (B, 3, R, R) or (B, D) to (B, C).
        """
        text = self.text_features(grad=False)
        return lambda inputs: self.logits_from_features(inputs, text)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen image features f1 (unnormalised, as stored in the buffer).

        Raises:
            ShapeError: if the images do not match the backbone's input size.

        Shape:
            images: (B, 3, R, R); returns (B, D) float32.
        """
        return self.backbone.encode_images(images)

    def _as_features(self, batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor):
            raise ShapeError(f"expected a tensor of images (B, 3, R, R) or image features (B, D), got {type(batch).__name__}")
        if batch.ndim == 4:
            return self.encode_images(batch)
        if batch.ndim == 2:
            if batch.shape[1] != self.embed_dim:
                raise ShapeError(
                    f"image features have dimension {batch.shape[1]} but backbone {self.backbone.name!r} has "
                    f"D={self.embed_dim}; features must come from the same backbone"
                )
            return batch.to(self.device, dtype=torch.float32, non_blocking=True)
        raise ShapeError(
            f"expected images (B, 3, {self.input_resolution}, {self.input_resolution}) or image features "
            f"(B, {self.embed_dim}), got shape {tuple(batch.shape)}"
        )

    def logits_from_features(
        self, image_features: torch.Tensor, text: TextFeatures | None = None, *, adapter_grad: bool = True
    ) -> torch.Tensor:
        """Logits of the method from frozen image features.

        Args:
            image_features: f1 from :meth:`encode_images` (or the buffer).
            text: Text features from :meth:`text_features` (computed here without gradients if
                omitted).
            adapter_grad: Track gradients to the adapter (``False`` when the image branch is not
                updated).

        Returns:
            ``sum over terms of s * cos(image, text)`` (``+ b`` per term for a backbone with a
            logit bias b: SigLIP); with ``head="seen"``, columns of classes not yet seen are
            ``-inf``; with ``unseen_classes="zeroshot"``, they are ``n * (s * cos(f1, w1) + b)``
            (n terms).

        Shape:
            image_features: (B, D); returns (B, C).
        """
        f1 = self._as_features(image_features)
        if text is None:
            text = self.text_features(grad=False)
        s, b = self.logit_scale, self.logit_bias
        images: dict[str, torch.Tensor] = {"f1": F.normalize(f1, dim=-1)}
        if self.adapter is not None:
            with torch.set_grad_enabled(adapter_grad and torch.is_grad_enabled()):
                f2 = self.adapter(f1)  # (B, D), from the unnormalised f1 as in the reference
                if any(i == "f2" for i, _ in self.method.terms):
                    images["f2"] = F.normalize(f2, dim=-1)
                if any(i == "f1+f2" for i, _ in self.method.terms):
                    images["f1+f2"] = F.normalize(f1 + f2, dim=-1)
        logits = None
        for image_kind, text_kind in self.method.terms:
            w = text.w1 if text_kind == "w1" else text.w2  # (C, D)
            term = s * images[image_kind] @ w.t()  # (B, C)
            if b is not None:
                term = term + b  # each term is the library's logit s * cos + b (SigLIP)
            logits = term if logits is None else logits + term
        if self.unseen_classes == "zeroshot" and not self._all_begun:  # frozen CLIP for classes not begun
            zeroshot = s * images["f1"] @ self.w1.t()  # (B, C)
            zeroshot = len(self.method.terms) * (zeroshot if b is None else zeroshot + b)
            logits = torch.where(self.seen, logits, zeroshot)
        if self.head == "seen":
            logits = logits.masked_fill(~self.seen, float("-inf"))
        return logits

    def forward(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        memory: Mapping[str, torch.Tensor] | None = None,
        branches: Iterable[str] | None = None,
    ) -> "torch.Tensor | StepLoss":
        """Class-IL logits of images (or of precomputed image features); with ``labels``, the
        training loss of the method (:meth:`loss`).

        Going through ``forward`` lets wrappers that hook it (``DistributedDataParallel``) wrap
        the training computation too.

        Shape:
            inputs: (B, 3, R, R) or features (B, D); returns logits (B, C), or a
            :class:`StepLoss` when ``labels`` (B,) are given.
        """
        if labels is not None:
            return self.loss(inputs, labels, memory=memory, branches=branches)
        return self.logits_from_features(inputs, self.text_features(grad=torch.is_grad_enabled()))

    # ================================================================ training
    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.shape[0] != batch_size:
            raise ShapeError(f"labels must have shape ({batch_size},) to match the batch, got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ShapeError(f"labels must be integer class ids, got dtype {labels.dtype}")
        on_cpu = labels.device.type == "cpu"
        if on_cpu and labels.numel():  # value checks only where they cost no device sync
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                raise ShapeError(f"labels must lie in [0, {self.num_classes}), got values in [{low}, {high}]")
            unseen = labels[~self._seen_cpu[labels.long()]]
            if unseen.numel():  # any head: training on a class not begun is a data leak
                raise StateError(
                    f"labels {sorted(set(unseen.tolist()))[:5]} belong to classes whose experience has not begun "
                    f"(begun: {self._seen_cpu.nonzero().squeeze(1).tolist()[:10]}); call "
                    f"learner.begin_experience(experience) for their experience before training on it"
                )
        labels = labels.to(self.device, dtype=torch.long, non_blocking=True)
        if not on_cpu:
            self._record_unbegun(labels)
        return labels

    def _record_unbegun(self, labels: torch.Tensor) -> None:
        """Mark, on the device and without a sync, the classes of ``labels`` (B,) whose experience
        has not begun; :meth:`begin_experience` and :meth:`end_experience` raise for them."""
        hits = torch.zeros_like(self._trained_unbegun).index_fill_(0, labels, True)  # (C,)
        self._trained_unbegun.logical_or_(hits & ~self.seen)

    def active_branches(self, schedule: AlternatingSchedule | None = None) -> frozenset[str]:
        """The branches that learn at this step: the method's, restricted by ``schedule``.

        Raises:
            ConfigError: the method trains nothing (``zeroshot``), ``schedule`` is not an
                :class:`~alta.AlternatingSchedule`, or it alternates a method with one branch.
        """
        branches = self.method.branches
        if not branches:
            raise ConfigError(f"method {self.method.name!r} has no trainable parameters; evaluate it instead of training")
        if schedule is None:
            return branches
        if not isinstance(schedule, AlternatingSchedule):
            raise ConfigError(f"schedule must be an AlternatingSchedule or None, got {type(schedule).__name__}")
        schedule.check_method(branches, method=f"method {self.method.name!r}")
        return schedule.active_branches() & branches

    def loss(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        memory: Mapping[str, torch.Tensor] | None = None,
        branches: Iterable[str] | None = None,
        text: TextFeatures | None = None,
    ) -> "StepLoss":
        """The training loss of the method on a batch and, optionally, a replayed memory.

        ``L = CE(z, y) + alpha * CE(z_b, y_b) + beta * MSE(z_b, z_b_stored)`` (Li et al., TMM 2023,
        reference ``main.py``; the DER++ loss of Buzzega et al., NeurIPS 2020), the replay terms
        only when ``memory`` is given and the method replays (:mod:`alta.replay`), then the extra
        loss terms: :func:`alta.losses.step_loss` over :attr:`loss_terms`. The learned-prompt
        features are computed once and shared by the batch and the memory.

        Args:
            inputs: Images (B, 3, R, R) or precomputed frozen image features (B, D).
            labels: Class ids in ``[0, C)``.
            memory: Items sampled from the buffer (``buffer.sample(learner.replay_batch_size)``),
                or ``None``.
            branches: Branches whose parameters get gradients (default: every branch of the
                method; see :meth:`active_branches`).
            text: This step's text features, already computed (:meth:`text_features` with
                ``grad="text" in branches``; a data-parallel step passes them encoded by class over
                the ranks); ``None`` computes them here.

        Returns:
            A :class:`StepLoss`: the loss with its graph, its terms (each a mean, with the
            number of items it averages over), and what the buffer stores for this batch.

        Raises:
            StateError: before :meth:`begin_experience`.
            ShapeError: wrong image size, feature dimension or label shape; a memory whose
                features or logits do not match this learner.

        Shape:
            inputs: (B, 3, R, R) or (B, D); labels: (B,); memory fields (M, ...).
        """
        self._require_experience("loss")
        active = self.method.branches if branches is None else frozenset(branches)
        f1 = self._as_features(inputs)  # (B, D)
        labels = self._check_labels(labels, f1.shape[0])  # (B,)

        if text is None:
            text = self.text_features(grad="text" in active)  # once per step, shared with replay
        if self.snapshot_timing == "last_forward" and text.w2 is not None:
            self._last_forward_w2 = text.w2.detach()  # pre-step prompts, as the reference snapshots
        logits = self.logits_from_features(f1, text, adapter_grad="image" in active)  # (B, C)
        replayed, memory_logits = None, None
        if memory is not None and self.method.replay:
            stored = check_memory(memory, embed_dim=self.embed_dim, num_classes=self.num_classes,
                                  device=self.device, backbone=self.backbone.name)
            checked = {"labels": stored.labels, "image_features": stored.image_features, "logits": stored.logits}
            replayed = {**{k: v.to(self.device, non_blocking=True) for k, v in memory.items() if k not in checked},
                        **checked}  # the fields check_memory moved are not moved again

            def memory_logits() -> torch.Tensor:  # z_b (M, C), when the first replay term asks for it
                return self.logits_from_features(stored.image_features, text, adapter_grad="image" in active)
        terms_inputs = LossInputs(learner=self, inputs=inputs, features=f1, labels=labels, logits=logits,
                                  memory=replayed, memory_logits=memory_logits, branches=active)
        return step_loss(self.loss_terms, terms_inputs, experience_ids=self.class_to_experience[labels])

    # ================================================================ state
    def state_dict(self, *args, **kwargs):
        """Trainable parameters, prompt snapshots and stream position; never the frozen backbone."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        for key in [k for k in state if k.startswith(prefix + "backbone.")]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load what :meth:`state_dict` saved (the backbone is not part of it).

        Everything is checked before anything is changed: a refused state leaves the learner as
        it was.

        Raises:
            CheckpointError: not a state dict; a state saved for another backbone (another family,
                architecture or weights: checked first); missing or unexpected keys (with
                ``strict``); mismatched shapes; a state saved for other class names (or another
                class order).
        """
        check_saved_state(state_dict, mine=self.state_dict(), backbone=self.backbone,
                          backbone_hash=int(self.backbone_hash), class_name_hashes=self.class_name_hashes,
                          method=self.method.name, num_classes=self.num_classes, strict=strict)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        self._refresh()
        return result

    def extra_repr(self) -> str:
        return (
            f"method={self.method.name!r} ({self.method.formula}), head={self.head!r}, classes={self.num_classes}, "
            f"trainable={self.num_trainable_parameters()}"
        )



# the keyword arguments CrossModalLearner.from_pretrained passes through to the learner
_LEARNER_OPTIONS = frozenset(inspect.signature(CrossModalLearner.__init__).parameters) - {"self", "backbone",
                                                                                          "class_names"}
