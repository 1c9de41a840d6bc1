"""A straightforward re-implementation of the ALTA reference code's loop.

Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA (``main.py``,
``models/coop.py``, ``models/customclip.py``, ``utils/fea_buffer.py``, ``utils/lr_scheduler.py``;
commit aae43b0), built on CoOp and mammoth. Written from reading that code, for two uses:

- the **oracle** of ``tests/test_reference_equivalence.py``: alta's
  :class:`~alta.CrossModalLearner` must give the same logits, losses, parameter updates and
  accuracies as this loop, step by step and over free-running runs of several experiences
  under alta's ``reference`` protocol (:mod:`alta.run.protocols`), for every method;
- the **baseline** of ``benchmarks/speed.py``: alta's training step is timed against this one.

It therefore does, on purpose, everything the reference does at every step, and none of alta's
savings:

- the hand-written prompts "a photo of a {class}" of ALL classes go through CLIP's
  ``encode_text`` (all 77 positions) at every forward of every method that uses w1;
- the learned prompts of ALL classes are built (``MyPromptLearner.forward``: the snapshotted
  classes' token-level prompts replaced by their frozen copies) and encoded at 77 positions at
  every forward, for every class, snapshotted or not;
- the replay batch gets a second forward (``forward_mlp``), which encodes all of that again;
- the image encoder runs on every training batch (no feature cache);
- evaluation runs the full forward (image encoder + text encoder) for every test batch.

And it follows the reference's loop (``main.py``, :meth:`ReferenceLoop.run`) where it matters:

- **Evaluation point.** The evaluation after an experience's last epoch runs *inside* the epoch
  loop, every ``test_epochs`` (10) epochs, on the test sets of the experiences seen so far:
  the experience just trained is scored with its live context, after the final optimiser step.
- **Snapshot timing.** There is no end-of-experience hook: at the start of experience t the
  reference sets ``text_input = prompts[:t * k]``, the token-level prompts returned by the last
  training forward of experience t-1, i.e. the context *before* that experience's final step
  (:meth:`ReferenceLoop.begin_experience`). The last experience is never snapshotted.
- **Class names.** w1 is tokenised from the raw class names ("a photo of a aquarium_fish");
  only the learned prompt replaces underscores by spaces (``MyPromptLearner``).
- **Learning rate.** The optimiser is built at lr 0.002 with a warm-up scheduler whose
  construction sets the rate to 1e-5, and the loop never steps it
  (:func:`reference_optimizer`): every step runs at 1e-5.

Only alta's frozen :class:`~alta.ClipBackbone` model object (the same ``clip.model.CLIP``), the
tokenizer (``clip.tokenize``) and :class:`~alta.MemoryBuffer` (so that, built with the same seed,
both loops draw the same replay items) are shared with the library; nothing of alta's learner,
prompt learner or method table is used for the computation. Training batches are given by the
caller (``run(batches=...)``), so both loops can see the same batches.

Where this loop deliberately differs from the original code (as alta does):

- **Precision.** The original converts the whole model, trainable parameters included, to fp16
  (``convert_weights``). Here the context vectors and the adapter stay in float32 and the frozen
  encoders run in the backbone's precision (fp32 on the CPU), as in alta.
- **Buffer.** The original's reservoir and sampling draw from NumPy's global RNG; here the
  seeded :class:`~alta.MemoryBuffer` (algorithm R too) is used, the same object alta uses.
- **Head.** Logits over all classes of the stream from the first experience on (``"all"``,
  the original protocol); alta's ``head="seen"`` option has no counterpart here.
- **Class-to-experience map.** Snapshotted classes are kept in a boolean mask rather than the
  original's "first t * k classes" slice, so any class order works (same result for the
  contiguous orders the original supports).
- **Data.** Shuffling and augmentation are the caller's (the original draws them from torch's
  global RNG through its DataLoaders).

The trainable parameters are initialised like alta's (context from the token embeddings of
``ctx_init``; adapter ``Linear(D, D/16) -> ReLU -> Linear(D/16, D)`` built under
``torch.manual_seed(seed)`` in a forked RNG), so the two loops start from the same point.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from alta.backbones import ClipBackbone, import_clip

__all__ = ["ReferenceLoop", "REFERENCE_METHODS", "reference_optimizer"]

# method -> (uses learned prompt, uses adapter, replays, snapshots), as in main.py / coop.py
REFERENCE_METHODS: dict[str, tuple[bool, bool, bool, bool]] = {
    "mlp": (False, True, True, False),  # MLPCustomClip: f2 . w1
    "resmlp": (False, True, True, False),  # ResMLPCustomClip: (f1 + f2) . w1
    "sprompt": (True, False, False, False),  # SPCustomCoOp: f1 . w2, plain CoOp PromptLearner
    "cprompt": (True, False, False, True),  # CPCustomCoOp: f1 . w2, MyPromptLearner
    "cprompt_oriprompt": (True, False, False, True),  # CPOriPCustomCoOp: f1 . w2 + f1 . w1
    "cprompt_mlp": (True, True, True, True),  # CPMLPCustomCoOp: f2 . w2
    "cprompt_resmlp": (True, True, True, True),  # CPResMLPCustomCoOp: (f1 + f2) . w2
    "oriclip2cprompt_mlp": (True, True, True, True),  # OriCLIP2CPMLPCustomCoOp: f1 . w1 + f2 . w2
    "oritext_mlp2cprompt_oriimg": (True, True, True, True),  # ALTA: f1 . w2 + f2 . w1
    "zeroshot": (False, False, False, False),  # ZeroShotOriClip: f1 . w1
}


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def reference_optimizer(
    params: Iterable[nn.Parameter], *, lr: float = 0.002, momentum: float = 0.9, weight_decay: float = 5e-4,
    epochs: int = 30, warmup_lr: float = 1e-5,
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LRScheduler]:
    """The reference's optimiser and scheduler (``utils/optimizer.py``, ``utils/lr_scheduler.py``).

    SGD at ``lr`` (0.002 in every config) wrapped in one constant warm-up epoch at ``warmup_lr``
    (1e-5) before a cosine schedule over ``epochs``. Building the warm-up scheduler sets the
    rate to ``warmup_lr``; ``main.py`` never calls ``scheduler.step()``, so every step of the
    run trains at 1e-5. Built here from torch's own schedulers (constant factor, then cosine);
    what matters is that nothing steps them.

    Returns:
        ``(optimizer, scheduler)``; ``optimizer.param_groups[0]["lr"] == warmup_lr``.
    """
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedulers = torch.optim.lr_scheduler
    scheduler = schedulers.SequentialLR(
        optimizer,
        [schedulers.ConstantLR(optimizer, factor=warmup_lr / lr, total_iters=1),
         schedulers.CosineAnnealingLR(optimizer, T_max=epochs)],
        milestones=[1],
    )
    return optimizer, scheduler


class ReferenceLoop(nn.Module):
    """The reference code's model and training step, computed the reference's way.

    Args:
        backbone: A frozen :class:`~alta.ClipBackbone` (only its ``model`` is used).
        class_names: One name per class, in label order, as the reference spells them: w1 uses
            them verbatim, the learned prompt with underscores replaced by spaces.
        method: One of :data:`REFERENCE_METHODS` (``"alta"`` means ``oritext_mlp2cprompt_oriimg``).
        alpha, beta: Replay loss weights (0.4 in the reference configs).
        replay_batch_size: Items drawn from the buffer per step (the reference uses the batch size, 32).
        ctx_init: Words initialising the context vectors ("a photo of a").
        template: Hand-written prompt for w1.
        adapter_reduction: Adapter bottleneck (16).
        seed: Seed of the adapter's initial weights.

    Shape:
        ``logits(images)``: images (B, 3, R, R) -> (B, C).
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        *,
        class_names: Sequence[str],
        method: str = "oritext_mlp2cprompt_oriimg",
        alpha: float = 0.4,
        beta: float = 0.4,
        replay_batch_size: int = 32,
        ctx_init: str = "a photo of a",
        template: str = "a photo of a {}",
        adapter_reduction: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        method = "oritext_mlp2cprompt_oriimg" if method == "alta" else method
        if method not in REFERENCE_METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(REFERENCE_METHODS)}")
        self.method = method
        self.uses_prompt, self.uses_adapter, self.replay, self.snapshot = REFERENCE_METHODS[method]
        self.backbone = backbone  # frozen, eval mode
        self.clip = backbone.model
        self.dtype = backbone.dtype
        self.alpha, self.beta = float(alpha), float(beta)
        self.replay_batch_size = replay_batch_size
        self.logit_scale = self.clip.logit_scale.detach().float().exp()  # s, frozen
        device = backbone.device
        clip = import_clip()
        names = [name.replace("_", " ") for name in class_names]  # MyPromptLearner's copy only
        num_classes = len(names)

        # w1 input: hand-written prompts of the RAW names, re-encoded at every forward (text_input)
        self.register_buffer("text_input", clip.tokenize([template.format(n) for n in class_names]).to(device))

        # MyPromptLearner / PromptLearner (CoOp, class token at the end), 77 positions
        ctx_init = ctx_init.replace("_", " ")
        n_ctx = len(ctx_init.split(" "))
        with torch.no_grad():
            init = self.clip.token_embedding(clip.tokenize(ctx_init).to(device)).float()
        self.ctx = nn.Parameter(init[0, 1 : 1 + n_ctx].clone())  # (M, W)
        tokenized = clip.tokenize([f"{ctx_init} {name}." for name in names]).to(device)  # (C, 77)
        with torch.no_grad():
            embedding = self.clip.token_embedding(tokenized).float()  # (C, 77, W)
        self.register_buffer("tokenized_prompts", tokenized)
        self.register_buffer("token_prefix", embedding[:, :1].clone())  # (C, 1, W): SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :].clone())  # (C, 77-1-M, W): CLS, EOS, pad
        if not self.uses_prompt:
            self.ctx.requires_grad_(False)

        if self.uses_adapter:
            dim = backbone.embed_dim
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.mlp_visual = nn.Sequential(OrderedDict([
                    ("linear1", nn.Linear(dim, max(1, dim // adapter_reduction))),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(max(1, dim // adapter_reduction), dim)),
                ])).to(device)
        else:
            self.mlp_visual = None

        # snapshots of token-level prompts (the reference's t_prompt), and the stream position
        self.register_buffer("snapshot_prompts", torch.zeros_like(embedding))  # (C, 77, W)
        self.register_buffer("snapshotted", torch.zeros(num_classes, dtype=torch.bool, device=device))
        self.register_buffer("class_to_experience", torch.full((num_classes,), -1, dtype=torch.long, device=device))
        self.last_prompts: torch.Tensor | None = None  # (C, 77, W): ``prompts`` of the last training forward

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the reference's optimizer updates (``optim_module``): ctx and/or the adapter."""
        params = [self.ctx] if self.uses_prompt else []
        if self.mlp_visual is not None:
            params += list(self.mlp_visual.parameters())
        return params

    # ------------------------------------------------------------------ encoders
    def encode_text_w1(self) -> torch.Tensor:
        """``self.clip.encode_text(self.text_input)``: all classes, all 77 positions.

        Shape:
            returns (C, D).
        """
        return self.clip.encode_text(self.text_input).float()

    def prompts(self) -> torch.Tensor:
        """``MyPromptLearner.forward(t_prompt)``: the prompts of ALL classes with the current
        context, the snapshotted classes' rows replaced by their frozen copies (plain CoOp,
        ``sprompt``, never replaces).

        Shape:
            returns (C, 77, W).
        """
        num_classes = self.token_prefix.shape[0]
        ctx = self.ctx.unsqueeze(0).expand(num_classes, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        if self.snapshot:
            prompts = torch.where(self.snapshotted[:, None, None], self.snapshot_prompts, prompts)
        return prompts

    def text_encoder(self, prompts: torch.Tensor) -> torch.Tensor:
        """CoOp's ``TextEncoder.forward``: 77 positions, EOT read-out, projection.

        Shape:
            prompts: (C, 77, W); returns (C, D).
        """
        clip = self.clip
        x = prompts.to(self.dtype) + clip.positional_embedding.to(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = clip.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = clip.ln_final(x).to(self.dtype)
        x = x[torch.arange(x.shape[0], device=x.device), self.tokenized_prompts.argmax(dim=-1)] @ clip.text_projection
        return x.float()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``image_encoder(image)``: the frozen image feature f1, every batch.

        Shape:
            images: (B, 3, R, R); returns (B, D) float32.
        """
        with torch.no_grad():
            images = images.to(self.backbone.device, dtype=self.dtype)
            return self.clip.visual(images).float()

    def forward_mlp(self, f1: torch.Tensor) -> torch.Tensor:
        """The method's logits from image features, with every text feature recomputed.

        Mirrors ``forward_mlp`` (and ``forward`` after the image encoder) of the reference's
        model classes: each call encodes the learned prompts and/or the hand-written prompts
        of all classes again.

        Shape:
            f1: (B, D); returns (B, C).
        """
        return self._forward_mlp(f1)[0]

    def _forward_mlp(self, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, prompts)`` as the reference's models return them (``prompts``: the
        token-level prompts (C, 77, W) the learned text was encoded from, ``None`` without one)."""
        s, m = self.logit_scale, self.method
        f1_n = _normalize(f1)
        if m == "zeroshot":
            return s * f1_n @ _normalize(self.encode_text_w1()).t(), None
        if m in ("mlp", "resmlp"):
            x = self.mlp_visual(f1)
            image = _normalize(x if m == "mlp" else x + f1)
            return s * image @ _normalize(self.encode_text_w1()).t(), None
        prompts = self.prompts()
        w2 = _normalize(self.text_encoder(prompts))  # (C, D)
        if m in ("sprompt", "cprompt"):
            return s * f1_n @ w2.t(), prompts
        if m == "cprompt_oriprompt":
            return s * f1_n @ w2.t() + s * f1_n @ _normalize(self.encode_text_w1()).t(), prompts
        if m == "cprompt_mlp":
            return s * _normalize(self.mlp_visual(f1)) @ w2.t(), prompts
        if m == "cprompt_resmlp":
            return s * _normalize(self.mlp_visual(f1) + f1) @ w2.t(), prompts
        if m == "oriclip2cprompt_mlp":
            logits1 = s * f1_n @ _normalize(self.encode_text_w1()).t()
            return logits1 + s * _normalize(self.mlp_visual(f1)) @ w2.t(), prompts
        # oritext_mlp2cprompt_oriimg (ALTA): f1 . w2 + f2 . w1
        logits1 = s * f1_n @ w2.t()
        return logits1 + s * _normalize(self.mlp_visual(f1)) @ _normalize(self.encode_text_w1()).t(), prompts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``model(x, text_input)``: image encoder, then all text features, then logits.

        Shape:
            images: (B, 3, R, R); returns (B, C).
        """
        return self.forward_mlp(self.forward_features(images))

    # ------------------------------------------------------------------ stream
    @torch.no_grad()
    def begin_experience(self, experience) -> None:
        """Start an experience as ``main.py`` does at the top of its task loop.

        Records the class -> experience map (for the buffer's experience ids and task-IL), and,
        for the snapshot methods, freezes the prompts of every class of the earlier experiences
        from the ``prompts`` of the last training forward (``text_input = prompts[:t * k]``):
        the context as it was *before* the previous experience's final optimiser step.
        """
        self.class_to_experience.copy_(torch.as_tensor(experience.class_to_experience, dtype=torch.long))
        if not self.snapshot or self.last_prompts is None:
            return
        earlier = (self.class_to_experience < int(experience.index)) & ~self.snapshotted  # (C,)
        self.snapshot_prompts[earlier] = self.last_prompts[earlier]
        self.snapshotted |= earlier

    # ------------------------------------------------------------------ training (main.py)
    def training_step(self, images: torch.Tensor, labels: torch.Tensor, *, optimizer, buffer=None) -> dict:
        """One step of ``main.py``'s inner loop.

        ``image_feas = forward_features(inputs)``; ``logits = forward_mlp(image_feas)``;
        ``loss = CE``; if the buffer is not empty: draw a replay batch, ``forward_mlp`` it
        (a second full text encoding), add ``alpha * CE + beta * MSE``; backward; step; offer
        the batch to the buffer with its pre-step logits (replay methods only).

        Shape:
            images: (B, 3, R, R); labels: (B,).
        """
        labels = labels.to(self.backbone.device)
        f1 = self.forward_features(images)  # (B, D)
        logits, prompts = self._forward_mlp(f1)  # (B, C); the replay forward's prompts are dropped
        if prompts is not None:
            self.last_prompts = prompts.detach()
        ce = F.cross_entropy(logits, labels)
        loss = ce
        zero = torch.zeros((), device=logits.device)
        replay_ce, replay_mse = zero, zero
        replay = buffer is not None and self.replay
        if replay and not buffer.is_empty():
            memory = buffer.sample(self.replay_batch_size)
            mem_f1 = memory["image_features"].to(logits.device)
            mem_labels = memory["labels"].to(logits.device)
            mem_logits = memory["logits"].to(logits.device)
            z_b = self.forward_mlp(mem_f1)  # the reference's psat_logits: text encoded again
            replay_ce = F.cross_entropy(z_b, mem_labels)
            replay_mse = nn.MSELoss()(z_b, mem_logits)
            loss = loss + self.alpha * replay_ce + self.beta * replay_mse
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if replay:
            buffer.add(labels=labels, image_features=f1.detach(), logits=logits.detach(),
                       experience_ids=self.class_to_experience[labels])
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        return {"loss": loss.detach(), "ce": ce.detach(), "replay_ce": replay_ce.detach(),
                "replay_mse": replay_mse.detach(), "correct": correct}

    # ------------------------------------------------------------------ the loop (main.py)
    def run(
        self,
        experiences: Sequence,
        *,
        optimizer: torch.optim.Optimizer,
        epochs: int,
        batches: Callable[[object, int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        buffer=None,
        eval_every: int = 10,
        eval_batch_size: int = 32,
        on_step: Callable[[object, int, dict], None] | None = None,
        on_evaluation: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """``main.py``'s task and epoch loops.

        For each experience: :meth:`begin_experience` (the snapshot of the earlier classes),
        then ``epochs`` epochs of :meth:`training_step` over ``batches(experience, epoch)``; after
        every epoch with ``(epoch + 1) % eval_every == 0`` (and ``eval_every > 0``), the test sets
        of the experiences seen so far are evaluated, inside the epoch loop. No scheduler is
        stepped (the reference never steps its own).

        Args:
            experiences: The stream.
            optimizer: From :func:`reference_optimizer`, built once for the run.
            epochs: Epochs per experience (``OPTIM.MAX_EPOCH``, 30).
            batches: ``batches(experience, epoch)`` -> the epoch's ``(images, labels)`` batches.
            buffer: The replay buffer (replay methods), or ``None``.
            eval_every: ``eval.test_epochs`` (10); 0 never evaluates.
            eval_batch_size: Test batch size (the reference's test loaders use the training
                batch size, 32).
            on_step: Called as ``on_step(experience, epoch, outputs)`` after each step.
            on_evaluation: Called with each evaluation record, before training goes on.

        Returns:
            One record per evaluation: ``experience``, ``epoch`` (1-based), ``class_il``,
            ``task_il`` (lists over the experiences seen so far, in %).
        """
        evaluations = []
        for t, experience in enumerate(experiences):
            self.begin_experience(experience)
            for epoch in range(epochs):
                for images, labels in batches(experience, epoch):
                    out = self.training_step(images, labels, optimizer=optimizer, buffer=buffer)
                    if on_step is not None:
                        on_step(experience, epoch, out)
                if eval_every > 0 and (epoch + 1) % eval_every == 0:
                    record = {"experience": t, "epoch": epoch + 1,
                              **self.evaluate(experiences[: t + 1], batch_size=eval_batch_size)}
                    evaluations.append(record)
                    if on_evaluation is not None:
                        on_evaluation(record)
        return evaluations

    # ------------------------------------------------------------------ evaluation (main.py)
    @torch.no_grad()
    def evaluate(self, experiences: Sequence, *, batch_size: int = 32) -> dict:
        """Class-IL and task-IL accuracy (%) per experience, re-encoding everything per batch.

        As ``main.py``: every test batch goes through ``model(x, text_input)`` (image encoder
        and all text features); task-IL sets the logits of classes outside the test set's
        experience to ``-inf`` (``mask_classes``).

        Returns:
            ``{"class_il": [...], "task_il": [...]}``, one entry per experience.
        """
        class_il, task_il = [], []
        mapping = self.class_to_experience
        for experience in experiences:
            correct_c = correct_t = total = 0
            for x, y in DataLoader(experience.test, batch_size=batch_size, shuffle=False):
                y = torch.as_tensor(y).to(mapping.device)
                logits = self(x)
                correct_c += int((logits.argmax(dim=1) == y).sum())
                masked = logits.masked_fill(mapping.unsqueeze(0) != int(experience.index), float("-inf"))
                correct_t += int((masked.argmax(dim=1) == y).sum())
                total += y.shape[0]
            class_il.append(100.0 * correct_c / max(total, 1))
            task_il.append(100.0 * correct_t / max(total, 1))
        return {"class_il": class_il, "task_il": task_il}
