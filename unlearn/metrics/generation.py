"""Generation metrics: a class-conditional diffusion model's samples, scored by a judge classifier.

Following metrics.md (generation part):

- `generation`: UA = 100 − the percentage of forget-class samples the judge assigns to the
  forgotten class; P-f = the judge's mean p(c_f) on them (%); Entropy-f = the judge's mean
  entropy on them (nats); Acc-r = the judge's accuracy on samples of the remaining classes
  (mean over classes; per class as `Acc@<c>`); FD = the Fréchet distance between judge features
  (its penultimate layer) of generated and real samples of the remaining classes; Samples/s.
- `generality`: UA-near, the same UA on conditions near the forgotten one: label embeddings
  (1 − λ)·e(c_f) + λ·e(c) for each λ in `near` and each remaining class c.

Sample count, sampler steps, guidance and η are pinned by the spec (`evaluation.generation`)
and recorded per record in `metric_info`, with the steps that actually ran (1 for a distilled
one-step generator). The real reference of FD is the training images of the remaining classes
(the data the generator learned from, as FID uses the training set); the judge was trained on
all real training images, never on generated ones. Every model of a cell draws the same noise
(seeded by the cell seed), so differences between rows are not noise draws. With several
forgotten classes, UA, P-f and Entropy-f average over them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged
from unlearn.metrics.base import Evaluation, Scores, eval_mode, metric
from unlearn.seeding import generator as seeded_generator


@dataclass(frozen=True)
class Judge:
    """A frozen classifier trained on real images: its class probabilities and penultimate features."""

    model: nn.Module
    key: str
    """Its cache key hash, or the sha256 of the checkpoint it was read from."""

    @torch.no_grad()
    def outputs(self, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """(probabilities, features) of images in [0, 1], on CPU."""
        probs, feats = [], []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            f = self.model.features(x)
            probs.append(torch.softmax(self.model.head(f).float(), dim=1).cpu())
            feats.append(f.float().cpu())
        if not probs:
            return torch.empty(0, 0), torch.empty(0, 0)
        return torch.cat(probs), torch.cat(feats)


@dataclass(frozen=True)
class GenerationCell:
    """What generation metrics read besides the model: the judge, the forgotten classes and the real images."""

    judge: Judge
    forgotten: tuple[int, ...]
    num_classes: int
    """The classes the judge knows (the real ones)."""
    real: TensorData
    """Real images of the remaining classes (the FD reference)."""
    conditions: int | None = None
    """The conditions the generator is sampled on (None: `num_classes`); more when the benchmark planted images
    under condition ids of their own (`num_classes` and up, `unlearn.data.planted`), which the judge cannot score."""

    @property
    def remaining(self) -> list[int]:
        return [c for c in range(self.num_classes) if c not in self.forgotten]

    @property
    def judged_forgotten(self) -> tuple[int, ...]:
        """The forgotten classes the judge knows (planted conditions are not among them)."""
        return tuple(c for c in self.forgotten if c < self.num_classes)

    @property
    def sampled(self) -> int:
        return self.conditions if self.conditions is not None else self.num_classes


@dataclass(frozen=True)
class Samples:
    """A model's samples per class with what it took to make them."""

    images: dict[int, Tensor]
    """Class -> images in [0, 1] (on the model's device)."""
    seconds: float
    steps: int
    """Network evaluations per sample along the sampler (1 for a one-step generator)."""

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.images.values())


def sample_conditions(model: nn.Module, conditions: Tensor, evaluation: Evaluation, tag: str) -> Tensor:
    """Samples for each condition, in chunks of the evaluation batch size, with noise seeded by the cell seed and
    `tag` (so every model of a cell sees the same noise); Diverged if a sample is not finite."""
    settings = evaluation.settings["generation"]
    gen = seeded_generator(evaluation.seed, "generation-samples", tag)
    chunks = []
    with eval_mode(model):
        for start in range(0, len(conditions), evaluation.batch_size):
            chunk = conditions[start:start + evaluation.batch_size]
            chunks.append(model.sample(chunk, settings.sampler_steps, settings.guidance, gen, settings.eta))
    images = torch.cat(chunks)
    if not bool(torch.isfinite(images).all()):
        raise Diverged("the generator's samples are NaN or infinite")
    return images


def samples(evaluation: Evaluation) -> Samples:
    """The model's `samples_per_class` samples of every class, made once per evaluation (shared by metrics and the
    sample grid)."""

    def make() -> Samples:
        cell: GenerationCell = evaluation.need("judge")
        n = evaluation.settings["generation"].samples_per_class
        labels = torch.arange(cell.sampled).repeat_interleave(n)
        start = time.perf_counter()
        images = sample_conditions(evaluation.model, labels, evaluation, "per-class")
        seconds = time.perf_counter() - start
        model = evaluation.model
        steps = 1 if model.is_one_step else evaluation.settings["generation"].sampler_steps
        return Samples({c: images[c * n:(c + 1) * n] for c in range(cell.sampled)}, seconds, steps)

    return evaluation.memoized("generation-samples", make)


def judged(evaluation: Evaluation) -> dict[int, tuple[Tensor, Tensor]]:
    """The judge's (probabilities, features) on the model's samples of every class it knows, once per evaluation
    (shared by `generation` and `diversity`)."""

    def make() -> dict[int, tuple[Tensor, Tensor]]:
        cell: GenerationCell = evaluation.need("judge")
        made = samples(evaluation)
        classes = sorted({*cell.judged_forgotten, *cell.remaining})
        return {c: cell.judge.outputs(made.images[c], evaluation.batch_size) for c in classes}

    return evaluation.memoized("generation-judged", make)


def real_features(evaluation: Evaluation) -> Tensor:
    """The judge's features of the real remaining-class images (`GenerationCell.real`), once per evaluation."""

    def make() -> Tensor:
        cell: GenerationCell = evaluation.need("judge")
        return cell.judge.outputs(cell.real.x, evaluation.batch_size)[1]

    return evaluation.memoized("generation-real-features", make)


def entropy(probs: Tensor) -> Tensor:
    """Per-row entropy in nats."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2·(Σ_a Σ_b)^½) between Gaussians fitted to the rows of `a` and `b`.

    Tr((Σ_a Σ_b)^½) is computed as Σ sqrt(eig(Σ_a^½ Σ_b Σ_a^½)) with symmetric eigendecompositions (negative
    round-off eigenvalues clipped to 0), which stays real and finite when a covariance is singular (fewer
    samples than feature dimensions), where the reference's `scipy.linalg.sqrtm` needs an ε-ridge.
    """
    x, y = a.double().numpy(), b.double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s1_half @ s2 @ s1_half), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def settings_info(evaluation: Evaluation, made: Samples) -> dict[str, Any]:
    """What a generation score depends on, for the record's metric_info."""
    settings = evaluation.settings["generation"]
    cell: GenerationCell = evaluation.need("judge")
    return {
        "samples_per_class": settings.samples_per_class,
        "sampler": "one-step" if made.steps == 1 and evaluation.model.is_one_step else "ddim",
        "sampler_steps": made.steps,
        "guidance": settings.guidance,
        "eta": settings.eta,
        "judge": cell.judge.key,
        "fd_real_samples": len(cell.real),
    }


@metric("generation", needs=("judge",), produces=("UA", "P-f", "Entropy-f", "Acc-r", "FD", "Samples/s"),
        settings=("generation",), timings=("Samples/s",))
def generation(evaluation: Evaluation) -> Scores:
    """UA, p(c_f) and entropy of the judge on forget-class samples; its accuracy on the remaining classes; FD.

    UA, P-f and Entropy-f are left out when no forgotten class is one the judge knows (planted conditions)."""
    cell: GenerationCell = evaluation.need("judge")
    made = samples(evaluation)
    outputs = judged(evaluation)
    out: dict[str, float] = {}
    forgotten_hits, p_f, ent = [], [], []
    for c in cell.judged_forgotten:
        probs, _ = outputs[c]
        forgotten_hits.append((probs.argmax(1) == c).float().mean())
        p_f.append(probs[:, c].mean())
        ent.append(entropy(probs).mean())
    if forgotten_hits:
        out["UA"] = 100.0 * (1.0 - float(torch.stack(forgotten_hits).mean()))
        out["P-f"] = 100.0 * float(torch.stack(p_f).mean())
        out["Entropy-f"] = float(torch.stack(ent).mean())
    features, accs = [], []
    for c in cell.remaining:
        probs, feats = outputs[c]
        acc = 100.0 * float((probs.argmax(1) == c).float().mean())
        out[f"Acc@{c}"] = acc
        accs.append(acc)
        features.append(feats)
    out["Acc-r"] = float(np.mean(accs))
    out["FD"] = frechet_distance(torch.cat(features), real_features(evaluation))
    out["Samples/s"] = made.count / made.seconds if made.seconds > 0 else float("nan")
    return Scores(out, settings_info(evaluation, made))


def shell_conditions(centre: Tensor, cosines: list[float], count: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """`count` embeddings per cosine c on the shell around `centre`: ‖e‖·(c·ê + √(1 − c²)·u), with u a random unit
    direction orthogonal to ê drawn from `gen` (RealEra's neighbourhood, at a fixed cosine rather than a range).
    Returns (embeddings, the cosine of each row)."""
    norm = centre.norm()
    unit = centre / norm
    rows, cos = [], []
    for c in cosines:
        u = torch.randn(count, len(centre), generator=gen).to(centre)
        u = u - (u @ unit)[:, None] * unit  # the component orthogonal to ê
        u = u / u.norm(dim=1, keepdim=True)
        rows.append(norm * (c * unit + (1.0 - c * c) ** 0.5 * u))
        cos.extend([c] * count)
    return torch.cat(rows), torch.tensor(cos, dtype=torch.float64)


def misses(cell: GenerationCell, images: Tensor, targets: Tensor, batch: int) -> Tensor:
    """Whether the judge does not assign each image to its target (forgotten) class."""
    probs, _ = cell.judge.outputs(images, batch)
    return probs.argmax(1) != targets


@metric("generality", needs=("judge",), produces=("UA-near", "UA-shell"), settings=("generation",))
def generality(evaluation: Evaluation) -> Scores:
    """UA on conditions near each forgotten class's embedding: interpolated towards every remaining class's
    (`UA-near`), and, when the spec sets `shell` cosines, on a cosine shell around it (`UA-shell`, RealEra's
    concept residue); none when no forgotten class is one the judge knows."""
    cell: GenerationCell = evaluation.need("judge")
    settings = evaluation.settings["generation"]
    model = evaluation.model
    rows, owners = [], []
    if not cell.judged_forgotten:
        return Scores({})
    with torch.no_grad():
        table = model.labels.weight.detach()
        for c_f in cell.judged_forgotten:
            for lam in settings.near:
                for c in cell.remaining:
                    mixed = (1 - lam) * table[c_f] + lam * table[c]
                    rows.append(mixed.expand(settings.near_samples, -1))
                    owners.extend([(c_f, lam)] * settings.near_samples)
    conditions = torch.cat(rows)
    images = sample_conditions(model, conditions, evaluation, "near")
    missed = misses(cell, images, torch.tensor([c_f for c_f, _ in owners]), evaluation.batch_size)
    out = {"UA-near": 100.0 * float(missed.float().mean())}
    lams = torch.tensor([lam for _, lam in owners])
    for lam in settings.near:
        out[f"UA-near@{lam:g}"] = 100.0 * float(missed[lams == lam].float().mean())
    info: dict[str, Any] = {"near": list(settings.near), "near_samples": settings.near_samples,
                            "conditions": len(conditions)}
    if settings.shell:
        out.update(shell_scores(evaluation, cell, table))
        info.update(shell=list(settings.shell), shell_samples=settings.shell_samples)
    return Scores(out, info)


def shell_scores(evaluation: Evaluation, cell: GenerationCell, table: Tensor) -> dict[str, float]:
    """UA-shell and UA-shell@c: UA on `shell_samples` random conditions at each cosine c from each forgotten
    class's embedding, the same directions for every model of a cell (seeded by the cell seed)."""
    settings = evaluation.settings["generation"]
    gen = seeded_generator(evaluation.seed, "generality-shell")
    conditions, cosines, targets = [], [], []
    for c_f in cell.judged_forgotten:
        embedded, cos = shell_conditions(table[c_f], settings.shell, settings.shell_samples, gen)
        conditions.append(embedded)
        cosines.append(cos)
        targets.extend([c_f] * len(embedded))
    images = sample_conditions(evaluation.model, torch.cat(conditions), evaluation, "shell")
    missed = misses(cell, images, torch.tensor(targets), evaluation.batch_size)
    cos = torch.cat(cosines)
    out = {"UA-shell": 100.0 * float(missed.float().mean())}
    for c in settings.shell:
        out[f"UA-shell@{c:g}"] = 100.0 * float(missed[cos == c].float().mean())
    return out
