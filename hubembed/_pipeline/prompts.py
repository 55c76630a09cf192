"""Prompts: a string put before each text (``EmbedSpec(prompt=...)``), or one of the model's named prompts
(``prompt_name="query"``), as sentence-transformers' ``encode(prompt=..., prompt_name=...)``.

What a prompt does to a text (``hubembed._pipeline.batching``):

* its word pieces go right after [CLS]: ``[CLS] prompt text [SEP]`` (pairs: ``[CLS] prompt a [SEP] b [SEP]``). The
  prompt is tokenized on its own, once, and never cut: a window, a truncation or a pair's trimming cuts the text.
  A prompt ending in a space or punctuation ("query: ", "query:") gives exactly the pieces of the string
  ``prompt + text``, which sentence-transformers tokenizes; one ending inside a word ("query" + "hello") is kept
  apart ("query", "hello"), where the joined string would give one word;
* a long text (``long="window"``) has the prompt in every window, each window's text cut to the room the prompt
  leaves (``seq_length - 2 - prompt pieces``); the stitched text keeps the [CLS] and prompt pieces of its first
  window. ``long="truncate"`` keeps the prompt whole and cuts the text, as sentence-transformers' truncation;
* ``include_prompt=False`` leaves [CLS] and the prompt's pieces out of mean/max/mean_max/mean_sqrt_len/
  weightedmean/attention/first_last_avg pooling, exactly as sentence-transformers' ``Pooling(include_prompt=False)``
  (its ``prompt_length`` is the prompt's tokenization without its trailing [SEP]: [CLS] counts; positions keep
  their weights in ``weightedmean``). ``cls`` and ``pooled`` read [CLS] (whose context holds the prompt): with
  them ``include_prompt=False`` is refused rather than ignored;
* token and word vectors (``embed_tokens``, ``embed_words``, ``level="tokens"/"words"``) are the user's text's
  pieces only, their spans into the text as given: the prompt is context, not output.

An empty prompt is no prompt (as sentence-transformers). Named prompts come from the registry (an entry's
``prompts``) and ``load(..., prompts={...})`` (``LoadOptions.prompts``: those given win, as sentence-transformers'
``prompts=``); ``embed_queries``/``embed_documents`` use the "query" prompt and the first of "document", "passage",
"corpus" the model defines (none: the texts are embedded without a prompt).

An extraction made with a prompt records it (``prompt``: the text; ``prompt_name`` and the model's named
``prompts`` when given by name). ``Extraction.embed(queries)`` embeds queries with ``query_spec``'s rule.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from hubembed.errors import InputError

QUERY = "query"
DOCUMENT_NAMES = ("document", "passage", "corpus")  # embed_documents' candidates, in order (sentence-transformers')
# Poolings include_prompt=False does not apply to: they read the [CLS] position (or the pooler's output of it).
CLS_POOLINGS = ("cls", "pooled")

Prompts = Tuple[Tuple[str, str], ...]  # named prompts as a frozen, hashable value: ((name, text), ...)
PromptsLike = Union[Mapping[str, str], Prompts]  # what load(..., prompts=) takes


def check(prompt: Any, prompt_name: Any, include_prompt: Any, pooling: str) -> None:
    """The prompt fields of a spec, checked without a model.

    Raises:
        InputError: a prompt that is not a string, a name that is not a non-empty string, both given,
            include_prompt not a bool, or include_prompt=False with a pooling that reads [CLS].
    """
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"prompt={prompt!r:.60}: a string put before each text (or None)")
    if prompt_name is not None and (not isinstance(prompt_name, str) or not prompt_name):
        raise InputError(f"prompt_name={prompt_name!r:.60}: the name of one of the model's prompts (or None)")
    if prompt is not None and prompt_name is not None:
        raise InputError(f"pass prompt= or prompt_name=, not both (prompt={prompt!r:.40}, prompt_name={prompt_name!r})")
    if not isinstance(include_prompt, (bool, np.bool_)):
        raise InputError(f"include_prompt={include_prompt!r}; valid: True or False")
    if not include_prompt and pooling in CLS_POOLINGS:
        raise InputError(
            f"include_prompt=False leaves the prompt out of mean/max/... pooling; pooling={pooling!r} reads the "
            f"[CLS] position only: drop include_prompt (or pool with 'mean')"
        )


def as_prompts(prompts: Any) -> Optional[Prompts]:
    """Named prompts (a mapping name -> text, or (name, text) pairs) as a frozen value; None: none given.

    Raises:
        InputError: not a mapping of non-empty names to strings.
    """
    if prompts is None:
        return None
    if isinstance(prompts, Mapping):
        pairs = list(prompts.items())
    elif isinstance(prompts, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in prompts):
        pairs = [tuple(p) for p in prompts]
    else:
        raise InputError(
            f"prompts={prompts!r:.80}; valid: a dict of prompt names to prompts, e.g. {{'query': 'query: '}}"
        )
    for name, text in pairs:
        if not isinstance(name, str) or not name or not isinstance(text, str):
            raise InputError(f"prompts: {name!r}: {text!r:.40}; valid: non-empty names, each a string prompt")
    return tuple((name, text) for name, text in pairs)


def named(defined: Optional[Mapping[str, str]], given: Optional[Prompts]) -> Dict[str, str]:
    """A model's named prompts: those it defines (its registry entry's), then those given to ``load`` (which win)."""
    return {**dict(defined or {}), **dict(given or ())}


def resolve(
    prompt: Optional[str], prompt_name: Optional[str], prompts: Mapping[str, str], model: str = ""
) -> Optional[str]:
    """The text put before each text: ``prompt``, or the model's prompt named ``prompt_name``; None for no prompt
    (nothing given, or an empty prompt).

    Raises:
        InputError: a name the model has no prompt for.
    """
    if prompt_name is not None:
        if prompt_name not in prompts:
            have = ", ".join(repr(k) for k in prompts) or "none"
            raise InputError(
                f"prompt_name={prompt_name!r}: {model or 'the model'} has no prompt of that name (its prompts: "
                f"{have}); give the text as prompt=, or name it: load(..., prompts={{{prompt_name!r}: '...'}})"
            )
        prompt = prompts[prompt_name]
    return prompt or None


def record(prompt: Optional[str], prompt_name: Optional[str], include_prompt: bool, prompts: Any) -> dict:
    """What a spec record (``info.spec``, the manifest, the feature-cache key) holds of the prompt, resolved against
    the encoder's named ``prompts``: nothing without one (older records stay as they were); else ``prompt`` (the
    text), and ``prompt_name`` with the model's ``prompts`` when it was named; ``include_prompt`` when False."""
    d: Dict[str, Any] = {}
    prompts = dict(prompts or {})
    text = resolve(prompt, prompt_name, prompts, "this encoder")
    if text is not None:
        d["prompt"] = text
        if prompt_name is not None:
            d["prompt_name"] = prompt_name
            d["prompts"] = prompts
    if not include_prompt:
        d["include_prompt"] = False
    return d


def for_role(role: str, prompts: Mapping[str, str], keywords: Dict[str, Any]) -> Dict[str, Any]:
    """``embed``'s keywords for ``embed_queries`` (role "query") or ``embed_documents`` ("document"): the model's
    query prompt, or its first of "document", "passage", "corpus"; unchanged when the call gives a prompt (or a
    spec with one) or the model has no such prompt (then the texts are embedded without one)."""
    spec = keywords.get("spec")
    given = [keywords.get("prompt"), keywords.get("prompt_name")]
    if spec is not None:
        given += [getattr(spec, "prompt", None), getattr(spec, "prompt_name", None)]
    if any(g is not None for g in given):
        return keywords
    names = (QUERY,) if role == QUERY else DOCUMENT_NAMES
    name = next((n for n in names if n in prompts), None)
    if name is None:
        return keywords
    if spec is not None:
        return {**keywords, "spec": spec.replace(prompt_name=name)}
    return {**keywords, "prompt_name": name}


def query_spec(
    spec: Any, rec: Mapping[str, Any], prompt: Optional[str] = None, prompt_name: Optional[str] = None
) -> Any:
    """The spec queries are embedded with to compare them with a corpus embedded with ``spec`` (its record ``rec``).

    * ``prompt=`` or ``prompt_name=`` given: that prompt;
    * the corpus used a document prompt by name ("document", "passage" or "corpus"): the model's "query" prompt (as
      recorded with the corpus), or none if it has none;
    * otherwise, the corpus's own prompt (a prompt given as text, or a name such as "query" or "clustering": the
      same task on both sides), or none.

    ``include_prompt`` stays the corpus's.
    """
    if prompt is not None or prompt_name is not None:
        return spec.replace(prompt=prompt, prompt_name=prompt_name)
    if rec.get("prompt_name") in DOCUMENT_NAMES:
        return spec.replace(prompt=(rec.get("prompts") or {}).get(QUERY) or None, prompt_name=None)
    return spec
