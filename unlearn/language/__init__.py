"""The language-model track (tasks-lm): synthetic two-choice tasks, their tokenizer, and (later) the kind.

`unlearn.language.tasks` generates the task suite from a seed (pure Python, no torch);
`unlearn.language.tokenizer` builds a word-level tokenizer for it and checks that any tokenizer can score
an item's two answers. Nothing is imported here, so importing the package stays light.
"""
