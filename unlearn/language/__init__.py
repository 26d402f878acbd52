"""The language-model track (tasks-lm): synthetic two-choice tasks, their tokenizer, the model and the kind.

`unlearn.language.tasks` generates the task suite from a seed (pure Python, no torch);
`unlearn.language.tokenizer` builds a word-level tokenizer for it and checks that any tokenizer can score
an item's two answers. `unlearn.language.encode` turns items and text into `TensorData` (x [N, C, 2, L]: token ids
and their roles), and `unlearn.language.model` holds `TwoChoiceLM` (a transformers causal LM scoring each option by
its continuation's log-likelihood, with its own `label_loss`), `lm_loss` (a text line's LM loss) and `LMBlueprint` (a small
GPT-2 from a config, or a local checkpoint). `unlearn.language.data` encodes a suite as the harness's splits,
`unlearn.language.forget` builds `task:NAME[:n=N]` forget sets and `unlearn.language.kind` is the `language` kind
(docs/language.md). Nothing is imported here, so importing the package stays light.
"""
