"""What a language model still knows of a forgotten task: layer-wise linear probes, and the task's predictors.

After "Unforgettable Generalization in Language Models" (Zhang, Choshen, Andreas, COLM 2024). Both metrics read
the kind's probe splits: `probe_train`, all of the forgotten task's training items, and `probe_heldout`, its unseen
test items (`unlearn.language.kind`). An item x[n] holds two options (`unlearn.language.encode`): "question true
answer" and "question distractor", y[n] the option of the true answer.

`lm-probe` (the paper's probes). Each item gives two (question, answer) pairs, its true-answer option (label 1,
"correct") and its distractor option (label 0). A pair's features are the hidden state at its LAST token (the
answer's last token) at one layer: the embedding output (`Probe@L0`) and each transformer block's output
(`Probe@L1` ... `Probe@Ln`; transformers returns the last block's after the final layer norm). Per layer an
L2-regularised logistic regression (scikit-learn, lbfgs, on standardised features, `evaluation.probe.C` and
`max_iter`) is fitted on the probe_train pairs and its accuracy (%) scored on the probe_heldout pairs (chance 50).

- `Probe` summarises the layers as the MEAN over the blocks' outputs (L1..Ln). Not the best layer: choosing the
  layer by its held-out accuracy would select on the scored data and bias every model's value upward, most for
  the model with the most layers of noise. Not L0: the embedding output at the last token is that token's
  embedding alone (its identity and position), a control that cannot read the question, so it measures the
  answer words' balance rather than the model. Not the last block alone: the paper reports that probes recover
  the task "at most layers", a claim about all of them, and a mean is the least noisy single number for it.
- `Probe-Δorig` and `Probe-Δoracle`: `Probe` minus the original model's and minus the oracle's (each computed once
  per cell, memoized on their Evaluations). The paper's finding is Probe-Δorig ≈ 0 after random-label forgetting
  even where the answers fall to chance; the oracle (retrained without the task) is the floor of what a model
  that never learnt the task still probes at (a probe fitted on 2 × |train| pairs may learn the task itself).

A caveat measured on tasks-lm: a model trained only by `label_loss` (the loss of the answer given the question)
is never trained on what follows the answer, so nothing makes its state at the answer token encode correctness. A
4-layer, 128-wide GPT-2 trained on `last` to 99.7 % train and 98 % test accuracy probed at 46-50 % on every layer
(chance), as untrained. The paper's LMs were pretrained on text, where every position predicts the next.

Differences from the paper: it stops the probe's training early on held-out data; here the probe is fitted to
convergence under a fixed L2 strength (C, default 1 on standardised features), which needs no third split and
is deterministic. The paper's per-layer results are plotted, with no summary number; `Probe` is ours.
`evaluation.probe`'s holdout, shots, repeats and min_per_class (the image probe's) are not used: the splits are
the kind's, and every item gives one pair of each label.

`lm-predictors` (the paper's two task-level predictors of how far forgetting generalises), computed on the
ORIGINAL model, so every record of a cell carries the same values:

- `Confidence`: the mean over the task's training items of the original's probability of the true answer
  against the distractor, the softmax over the two options' summed log-likelihoods (the model's output), a
  fraction in [0, 1]. The paper: the confidence of the LM's initial task predictions, of the true answer against
  the distractor before forgetting.
- `Variability`: the trace of the covariance matrix (sample covariance, ddof 1) over the task's training items of
  the hidden state at the question's last token (the last context token, before the answer: the same for both
  options, as the model is causal) at the last layer transformers returns (the last block's output after the
  final layer norm, the state the LM head reads). The paper: the trace of the covariance of the representations
  of the training data at the question's last token at a late layer; which layer exactly, and whether before or
  after the final norm, is not known to us (no public code), so this is our choice.

Both are taken over all of the task's training items (probe_train), which the original was trained on, not over
the forget set alone (its first n with `task:NAME:n=N`): a property of the task, the same whatever n a cell forgets.
The paper finds low confidence and low variability go with more generalisation of forgetting; rank-correlating
them with the forget ratio across tasks is the analysis's job (each cell gives one task's pair of values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unlearn.errors import UserError
from unlearn.language.encode import CONTEXT, PADDING
from unlearn.metrics.base import Evaluation, Scores, eval_mode, metric
from unlearn.spec import ProbeSettings

CHANCE = 50.0


@torch.no_grad()
def last_token_states(model: Any, x: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For items x [N, 2, 2, L], in one no-grad pass in eval mode: every layer's hidden state at each option's last
    token, [layers + 1, N, 2, D], and the last layer's at the question's last token, [N, D] (float32, on CPU)."""
    pairs, questions = [], []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            roles = chunk[:, :, 1]
            last = (roles != PADDING).sum(-1) - 1  # right-padded: the last real token, [B, 2]
            question_end = (roles[:, 0] == CONTEXT).sum(-1) - 1  # the context comes first, [B]
            states = model.hidden_states(chunk)
            stacked = torch.stack(states)  # [layers + 1, B, 2, L, D]
            index = last[None, :, :, None, None].expand(len(states), -1, -1, 1, stacked.shape[-1])
            pairs.append(stacked.gather(3, index).squeeze(3).float().cpu())
            rows = torch.arange(len(chunk), device=chunk.device)
            questions.append(states[-1][rows, 0, question_end].float().cpu())
    if not pairs:
        raise UserError("the language probes need at least one item of the forgotten task in each probe split")
    return torch.cat(pairs, dim=1).numpy(), torch.cat(questions).numpy()


def split_states(ev: Evaluation, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`last_token_states` of a split, computed once per Evaluation (the probe and the predictors share it)."""
    return ev.memoized(("lm-states", split), lambda: last_token_states(ev.model, ev.splits[split].x, ev.batch_size))


def pair_labels(y: np.ndarray) -> np.ndarray:
    """Per item and option, 1 where the option holds the true answer: [N, 2]."""
    return (np.arange(2)[None, :] == y[:, None]).astype(np.int64)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, held_x: np.ndarray, held_y: np.ndarray,
                   settings: ProbeSettings, seed: int) -> float:
    """Accuracy (%) on (held_x, held_y) of a standardised L2 logistic regression fitted on (train_x, train_y)."""
    from sklearn.linear_model import LogisticRegression  # loaded when a probe runs, not with the registry
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=settings.C, max_iter=settings.max_iter,
                                                               random_state=seed))
    probe.fit(train_x, train_y)
    return 100.0 * float((probe.predict(held_x) == held_y).mean())


def layer_probes(ev: Evaluation) -> list[float]:
    """`ev.model`'s probe accuracy (%) per layer (embedding output first), computed once per Evaluation."""
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())

    def compute() -> list[float]:
        (train, _), (held, _) = split_states(ev, "probe_train"), split_states(ev, "probe_heldout")
        train_y = pair_labels(ev.splits["probe_train"].y.cpu().numpy()).reshape(-1)
        held_y = pair_labels(ev.splits["probe_heldout"].y.cpu().numpy()).reshape(-1)
        return [probe_accuracy(train[layer].reshape(len(train_y), -1), train_y,
                               held[layer].reshape(len(held_y), -1), held_y, settings, ev.seed)
                for layer in range(len(train))]

    return ev.memoized(("lm-probe",), compute)


def summary(layers: list[float]) -> float:
    """`Probe`: the mean over the blocks' outputs (layer 0, the embedding output, left out; see the docstring)."""
    return float(np.mean(layers[1:]))


@metric("lm-probe", needs=("probe_train", "probe_heldout", "original", "oracle", "language"),
        produces=("Probe", "Probe-Δorig", "Probe-Δoracle"), settings=("probe",))
def lm_probe(ev: Evaluation) -> Scores:
    """Per-layer linear-probe accuracy on the forgotten task's held-out (question, answer) pairs, its mean over
    the blocks, and that mean's difference to the original's and the oracle's (see the module docstring)."""
    cell = ev.need("language")
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())
    mine = layer_probes(ev)
    values = {f"Probe@L{layer}": accuracy for layer, accuracy in enumerate(mine)}
    values["Probe"] = summary(mine)
    values["Probe-Δorig"] = values["Probe"] - summary(layer_probes(ev.need("original")))
    values["Probe-Δoracle"] = values["Probe"] - summary(layer_probes(ev.need("oracle")))
    info = {
        "task": cell.task,
        "pairs": {"probe_train": 2 * len(ev.splits["probe_train"]), "probe_heldout": 2 * len(ev.splits["probe_heldout"])},
        "features": "hidden state at the pair's last token; L0 the embedding output, Li block i's output",
        "summary": f"Probe: mean of Probe@L1..L{len(mine) - 1}",
        "probe": f"StandardScaler + LogisticRegression(C={settings.C:g}, l2, lbfgs, max_iter={settings.max_iter})",
    }
    return Scores(values, info)


@metric("lm-predictors", needs=("probe_train", "original", "language"), produces=("Confidence", "Variability"))
def lm_predictors(ev: Evaluation) -> Scores:
    """The original model's confidence in the true answer and the variability of its question representations
    on the forgotten task's training items (the paper's two predictors; see the module docstring)."""
    cell = ev.need("language")
    original: Evaluation = ev.need("original")
    values: dict[str, float] = original.memoized(("lm-predictors",), lambda: predictors(original))
    return Scores(dict(values), {"task": cell.task, "items": len(ev.splits["probe_train"]),
                                 "variability_at": "the question's last token, the last layer (after the final norm)"})


def predictors(ev: Evaluation) -> dict[str, float]:
    """Confidence and Variability of `ev.model` on the probe_train items."""
    if len(ev.splits["probe_train"]) < 2:
        raise UserError("lm-predictors needs at least two training items of the forgotten task")
    _, questions = split_states(ev, "probe_train")
    return {"Confidence": float(ev["probe_train"].confidence.mean()), "Variability": covariance_trace(questions)}


def covariance_trace(states: np.ndarray) -> float:
    """The trace of the sample covariance (ddof 1) of the rows of `states` [N, D]: the summed per-feature variance."""
    return float(np.trace(np.cov(states.astype(np.float64), rowvar=False)))
