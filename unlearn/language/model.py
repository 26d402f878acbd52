"""The language kind's model: a Hugging Face causal LM that scores two-choice items, and its blueprint and loss.

`TwoChoiceLM` wraps a causal LM (`self.lm`) and reads the layout of `unlearn.language.encode`: for x of shape
[B, C, 2, L] it returns [B, C] scores, each option's summed log-likelihood of its role-1 (scored) tokens given
the tokens before them, with padding (role -1) masked out of attention. The scores are the logits of a C-way
choice: their argmax is the model's answer (as lm-evaluation-harness picks the option of highest summed
log-likelihood, not the length-normalised one), cross-entropy against y is the two-choice loss, and the accuracy
metrics, which take `model(x).argmax(1)`, work unchanged.

`label_loss(x, y)` is the model's supervised loss (the harness's `cross_entropy` calls it, so every method trains
it with its own objective): the causal-LM loss of option y's scored tokens, that is, fine-tuning on the labelled
answer, as the language-model unlearning literature fine-tunes; `label_log_likelihood(x, y)` is log p(option y),
per sample (NPO's policy). `lm_loss` is the LM loss of a text line.

`LMBlueprint` builds the model either as a small GPT-2 from a config, trained from scratch (initialised by
`seeded_build`: same seed and tags, same weights; the global RNG untouched), or from `checkpoint`, a local
directory of a pretrained causal LM (GPT-2, Pythia, Llama, ...), read with `local_files_only=True` unless
`download` allows the hub. Checkpoint weights are read only from safetensors files (never unpickled) and in
float32. transformers is imported only when a model is built, so importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from unlearn.errors import UserError
from unlearn.language.encode import PADDING, SCORED
from unlearn.models.base import seeded_build

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class TwoChoiceLM(nn.Module):
    """A causal LM (`self.lm`) as a C-way chooser: `forward(x)` maps x [B, C, 2, L] to scores [B, C]."""

    def __init__(self, lm: PreTrainedModel):
        super().__init__()
        self.lm = lm

    @property
    def context_length(self) -> int | None:
        """The longest sequence the model takes (GPT-2's n_positions, others' max_position_embeddings), if known."""
        config = self.lm.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)

    def token_log_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """For x [B, C, 2, L]: log p(token_t | tokens_<t) at t = 1..L-1, and whether t is scored; both [B, C, L-1].

        The log-probabilities are computed in float32 (also under autocast); at unscored positions they are
        whatever the model says and must be masked by the caller.
        """
        if x.dim() != 4 or x.shape[2] != 2:
            raise ValueError(f"TwoChoiceLM takes x of shape [B, C, 2, L], not {tuple(x.shape)}")
        batch, options, _, length = x.shape
        ids = x[:, :, 0].reshape(batch * options, length)
        roles = x[:, :, 1].reshape(batch * options, length)
        logits = self.lm(input_ids=ids, attention_mask=(roles != PADDING).long()).logits[:, :-1]
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        scored = roles[:, 1:] == SCORED
        return log_probs.view(batch, options, length - 1), scored.view(batch, options, length - 1)

    def hidden_states(self, x: Tensor) -> tuple[Tensor, ...]:
        """For x [B, C, 2, L]: the LM's hidden states, each [B, C, L, D], padding masked out of attention: the
        embedding output, then every block's output (the last one after the final norm, as transformers returns
        it: what the LM head reads). The LM head is not run (over a large vocabulary it is most of the cost)."""
        batch, options, _, length = x.shape
        ids, roles = x[:, :, 0].reshape(-1, length), x[:, :, 1].reshape(-1, length)
        out = self.lm.base_model(input_ids=ids, attention_mask=(roles != PADDING).long(), output_hidden_states=True)
        return tuple(state.view(batch, options, length, -1) for state in out.hidden_states)

    def forward(self, x: Tensor) -> Tensor:
        """Each option's summed log-likelihood of its scored tokens: [B, C]."""
        log_probs, scored = self.token_log_probs(x)
        return torch.where(scored, log_probs, 0.0).sum(-1)

    def chosen_log_probs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """`token_log_probs` of option y[n] of each sample only (one forward pass per sample): both [B, L-1]."""
        picked = x.gather(1, y.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:]))
        log_probs, scored = self.token_log_probs(picked)
        return log_probs[:, 0], scored[:, 0]

    def label_log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(option y[n] | context) per sample: the summed log-likelihood of its scored tokens, [B]."""
        log_probs, scored = self.chosen_log_probs(x, y)
        return torch.where(scored, log_probs, 0.0).sum(-1)

    def label_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The supervised loss of labels y (`unlearn.train.cross_entropy` uses it): the causal-LM loss of option
        y[n], the mean next-token cross-entropy over the scored tokens of the batch, padding excluded. For an
        item that is fine-tuning on the answer y names after the question; for a text row (y = 0), the LM loss
        of the line."""
        log_probs, scored = self.chosen_log_probs(x, y)
        return -torch.where(scored, log_probs, 0.0).sum() / scored.sum().clamp(min=1)


def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The causal-LM loss of option 0 (the text line of `encode_text`) as a `LossFn`; `y` is unused."""
    return model.label_loss(x[:, :1], torch.zeros_like(y))


@dataclass(frozen=True)
class LMBlueprint:
    """Everything needed to build the language kind's model; picklable like `Blueprint`.

    Either a GPT-2 config (`vocab_size` and the sizes below; `pad_id` is the tokenizer's pad token, `dropout`
    every GPT-2 dropout rate) trained from scratch, or `checkpoint`: a directory of a pretrained causal LM, whose
    own config then decides the architecture (the size fields are ignored). `download` lets `checkpoint` name a
    model on the Hugging Face hub.
    """

    vocab_size: int = 0
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    n_positions: int = 64
    pad_id: int = 0
    dropout: float = 0.0
    checkpoint: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        if self.checkpoint is None and self.vocab_size < 1:
            raise UserError("a language model needs a vocab_size (a GPT-2 config) or a checkpoint directory")

    def build(self, seed: int, *tags: str, device: torch.device | str = "cpu") -> TwoChoiceLM:
        """A fresh model: from the config, initialised from (seed, "init", *tags) with the global RNG untouched;
        from a checkpoint, its pretrained weights (the same for every seed and tag)."""
        checkpoint = self.checkpoint
        if checkpoint is not None:
            with quiet_transformers():
                return seeded_build(lambda: TwoChoiceLM(load_causal_lm(checkpoint, self.download)), seed, tags, device)
        return seeded_build(lambda: TwoChoiceLM(self.gpt2()), seed, tags, device)

    def gpt2(self) -> PreTrainedModel:
        """A randomly initialised GPT-2 of this config (weights from the global RNG)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=self.vocab_size, n_positions=self.n_positions, n_embd=self.n_embd, n_layer=self.n_layer,
            n_head=self.n_head, resid_pdrop=self.dropout, embd_pdrop=self.dropout, attn_pdrop=self.dropout,
            pad_token_id=self.pad_id, bos_token_id=None, eos_token_id=None,
        )
        return GPT2LMHeadModel(config)


def load_causal_lm(checkpoint: str, download: bool = False) -> PreTrainedModel:
    """The pretrained causal LM in `checkpoint`, in float32 from safetensors weights; UserError (one line naming the
    directory and what is wrong) when it holds no causal LM: no config.json, a config transformers does not know
    or that is no causal LM, weights missing or of other shapes than the config's, or a model whose predictions
    depend on later tokens (an encoder such as BERT loaded without is_decoder)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    where = f"checkpoint {checkpoint!r}"
    if not download:  # checked first: transformers may reach for the hub when a local path does not exist
        if not Path(checkpoint).is_dir():
            raise UserError(f"{where} is not a local directory (allow download to fetch it from the Hugging Face hub)")
        if not (Path(checkpoint) / "config.json").is_file():
            raise UserError(f"{where} holds no config.json, so it is no transformers model")
    try:
        config = AutoConfig.from_pretrained(checkpoint, local_files_only=not download)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{where}: its config cannot be read ({first_line(exc)})") from None
    if getattr(config, "is_encoder_decoder", False) or type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise UserError(f"{where} holds a {config.model_type!r} model, which is no causal language model")
    try:
        lm, info = AutoModelForCausalLM.from_pretrained(
            checkpoint, config=config, local_files_only=not download, use_safetensors=True, dtype=torch.float32,
            output_loading_info=True,
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"{where}: its weights cannot be loaded ({first_line(exc)})") from None
    missing = sorted(info["missing_keys"]) + sorted(str(key) for key in info["mismatched_keys"])
    if missing:
        raise UserError(f"{where}: its weights do not fit its config ({len(missing)} tensors missing or of other "
                        f"shapes, e.g. {missing[0]})")
    check_causal(lm, where)
    return lm


@torch.no_grad()
def check_causal(lm: PreTrainedModel, where: str) -> None:
    """Raise UserError unless changing the last token of a short sequence leaves the logits before it unchanged."""
    vocab = lm.get_input_embeddings().num_embeddings
    ids = torch.arange(4).remainder(vocab).view(1, 4)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab
    training = lm.training
    lm.eval()
    before, after = lm(input_ids=ids).logits[0, :-1], lm(input_ids=changed).logits[0, :-1]
    lm.train(training)
    if not torch.allclose(before, after, rtol=1e-4, atol=1e-4):
        raise UserError(f"{where} holds a {lm.config.model_type!r} model that is no causal language model: its "
                        f"predictions depend on later tokens")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bar and warnings off for the block: the harness shows its own progress, and says in
    one line what is wrong with a checkpoint."""
    from transformers.utils import logging

    shown, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if shown:
            logging.enable_progress_bar()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers' messages run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
