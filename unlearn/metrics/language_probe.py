"""What a language model still knows of a forgotten task: layer-wise linear probes, and the task's predictors.

After "Unforgettable Generalization in Language Models" (Zhang, Choshen, Andreas, COLM 2024). Both metrics read
the kind's probe splits: `probe_train`, all of the forgotten task's training items, and `probe_heldout`, its unseen
test items (`unlearn.language.kind`). An item x[n] holds two options (`unlearn.language.encode`): "question true
answer" and "question distractor", y[n] the option of the true answer.

`lm-probe` (the paper's probes, read where our models compute the answer). Per item, the features are the hidden
state at the question's LAST token (the last context token, the state from which the model predicts the answer;
the same in both options, as the model is causal) at one layer: the embedding output (`Probe@L0`) and each
transformer block's output (`Probe@L1` ... `Probe@Ln`; transformers returns the last block's after the final layer
norm). Per layer an L2-regularised multinomial logistic regression (scikit-learn, lbfgs, on standardised features,
`evaluation.probe.C` and `max_iter`) is fitted on the probe_train items to name the true answer among the task's
answers, and scored on the probe_heldout items as the model is, as a two-choice question: right when it gives the
true answer a higher probability than the distractor (a tie counts half; an answer it never saw in training has
probability 0). Accuracy in %, chance 50.

Why not the paper's features. The paper probes the state at the last token of each (question, answer) pair, to
say whether the pair is correct. Its LMs were pretrained on text, where every position predicts the next. Ours
learn a task only from the loss of the answer given the question, so nothing follows the answer in training and
nothing makes the state at the answer token encode correctness: measured on tasks-lm, a 4-layer, 128-wide GPT-2
trained on `last` to 99.7 % train and 98 % test accuracy probed at 46-50 % on every layer with the paper's
features, as untrained. The question's last token is where our models hold what they know of the answer, so a
probe there asks the paper's question (does a linear read-out still perform the task after forgetting?) of the
state that was trained. For a two-answer task (yes/no, even/odd) naming the true answer and saying which pair is
correct are the same decision.

- `Probe` summarises the layers as the MEAN over the blocks' outputs (L1..Ln). Not the best layer: choosing the
  layer by its held-out accuracy would select on the scored data and bias every model's value upward, most for
  the model with the most layers of noise. Not L0: the embedding output at the question's last token is that
  token's embedding alone (mostly "?"), a control that cannot read the question. Not the last block alone: the
  paper reports that probes recover the task "at most layers", a claim about all of them, and a mean is the least
  noisy single number for it.
- `Probe-Δorig` and `Probe-Δoracle`: `Probe` minus the original model's and minus the oracle's (each computed once
  per cell, memoized on their Evaluations). The paper's finding is Probe-Δorig ≈ 0 after random-label forgetting
  even where the answers fall to chance; the oracle (retrained without the task) is the floor of what a model
  that never learnt the task still probes at (a probe fitted on |train| items may learn the task itself).

Other differences from the paper: it stops the probe's training early on held-out data; here the probe is fitted
to convergence under a fixed L2 strength (C, default 1 on standardised features), which needs no third split and
is deterministic. The paper's per-layer results are plotted, with no summary number; `Probe` is ours.
`evaluation.probe`'s holdout, shots, repeats and min_per_class (the image probe's) are not used: the splits are
the kind's.

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
from unlearn.language.encode import CONTEXT, SCORED
from unlearn.metrics.base import Evaluation, Scores, eval_mode, metric
from unlearn.spec import ProbeSettings

CHANCE = 50.0


@torch.no_grad()
def question_states(model: Any, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """For items x [N, 2, 2, L], in one no-grad pass in eval mode: every layer's hidden state at the question's last
    token, [layers + 1, N, D] (float32, on CPU; option 0's, which equals option 1's in a causal model)."""
    chunks = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size, :1]  # one option: the question's states do not depend on the answer
            question_end = (chunk[:, 0, 1] == CONTEXT).sum(-1) - 1  # the context comes first, [B]
            rows = torch.arange(len(chunk), device=chunk.device)
            chunks.append(torch.stack([state[rows, 0, question_end] for state in model.hidden_states(chunk)])
                          .float().cpu())
    if not chunks:
        raise UserError("the language probes need at least one item of the forgotten task in each probe split")
    return torch.cat(chunks, dim=1).numpy()


def split_states(ev: Evaluation, split: str) -> np.ndarray:
    """`question_states` of a split, computed once per Evaluation (the probe and the predictors share it)."""
    return ev.memoized(("lm-states", split), lambda: question_states(ev.model, ev.splits[split].x, ev.batch_size))


def answers(x: torch.Tensor, y: torch.Tensor) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Each item's true answer and distractor, as the token ids of their scored continuations."""
    def scored(n: int, option: int) -> tuple[int, ...]:
        ids, roles = x[n, option, 0], x[n, option, 1]
        return tuple(ids[roles == SCORED].tolist())

    labels = y.tolist()
    return [scored(n, c) for n, c in enumerate(labels)], [scored(n, 1 - c) for n, c in enumerate(labels)]


def probe_accuracy(train_x: np.ndarray, train_answers: list[tuple[int, ...]], held_x: np.ndarray,
                   held_answers: list[tuple[int, ...]], held_distractors: list[tuple[int, ...]],
                   settings: ProbeSettings, seed: int) -> float:
    """Two-choice accuracy (%) on the held-out items of a standardised L2 multinomial logistic regression fitted to
    name the true answer of the training items (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression  # loaded when a probe runs, not with the registry
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(train_answers))
    index = {answer: i for i, answer in enumerate(classes)}
    if len(classes) == 1:  # one answer in training: the probe can only name it
        probs = np.ones((len(held_x), 1))
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=settings.C, max_iter=settings.max_iter,
                                                                   random_state=seed))
        probe.fit(train_x, [index[a] for a in train_answers])
        probs = probe.predict_proba(held_x)

    def p(n: int, answer: tuple[int, ...]) -> float:
        return float(probs[n, index[answer]]) if answer in index else 0.0

    right = [1.0 if p(n, a) > p(n, d) else 0.5 if p(n, a) == p(n, d) else 0.0
             for n, (a, d) in enumerate(zip(held_answers, held_distractors, strict=True))]
    return 100.0 * float(np.mean(right))


def layer_probes(ev: Evaluation) -> list[float]:
    """`ev.model`'s probe accuracy (%) per layer (embedding output first), computed once per Evaluation."""
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())

    def compute() -> list[float]:
        train, held = split_states(ev, "probe_train"), split_states(ev, "probe_heldout")
        train_answers, _ = answers(ev.splits["probe_train"].x, ev.splits["probe_train"].y)
        held_answers, held_distractors = answers(ev.splits["probe_heldout"].x, ev.splits["probe_heldout"].y)
        return [probe_accuracy(train[layer], train_answers, held[layer], held_answers, held_distractors, settings,
                               ev.seed)
                for layer in range(len(train))]

    return ev.memoized(("lm-probe",), compute)


def summary(layers: list[float]) -> float:
    """`Probe`: the mean over the blocks' outputs (layer 0, the embedding output, left out; see the docstring)."""
    return float(np.mean(layers[1:]))


@metric("lm-probe", needs=("probe_train", "probe_heldout", "original", "oracle", "language"),
        produces=("Probe", "Probe-Δorig", "Probe-Δoracle"), settings=("probe",))
def lm_probe(ev: Evaluation) -> Scores:
    """Per-layer linear-probe accuracy on the forgotten task's held-out items (read at the question's last token),
    its mean over the blocks, and that mean's difference to the original's and the oracle's (module docstring)."""
    cell = ev.need("language")
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())
    mine = layer_probes(ev)
    values = {f"Probe@L{layer}": accuracy for layer, accuracy in enumerate(mine)}
    values["Probe"] = summary(mine)
    values["Probe-Δorig"] = values["Probe"] - summary(layer_probes(ev.need("original")))
    values["Probe-Δoracle"] = values["Probe"] - summary(layer_probes(ev.need("oracle")))
    info = {
        "task": cell.task,
        "items": {"probe_train": len(ev.splits["probe_train"]), "probe_heldout": len(ev.splits["probe_heldout"])},
        "features": "hidden state at the question's last token; L0 the embedding output, Li block i's output",
        "summary": f"Probe: mean of Probe@L1..L{len(mine) - 1}",
        "probe": f"StandardScaler + multinomial LogisticRegression(C={settings.C:g}, l2, lbfgs, "
                 f"max_iter={settings.max_iter}) naming the answer; scored answer against distractor",
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
    questions = split_states(ev, "probe_train")[-1]
    return {"Confidence": float(ev["probe_train"].confidence.mean()), "Variability": covariance_trace(questions)}


def covariance_trace(states: np.ndarray) -> float:
    """The trace of the sample covariance (ddof 1) of the rows of `states` [N, D]: the summed per-feature variance."""
    return float(np.trace(np.cov(states.astype(np.float64), rowvar=False)))
