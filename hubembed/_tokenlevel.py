"""The token-level entry points of ``Encoder``: word pieces and words with their character spans and vectors.

``TokenLevel`` is a base of ``Encoder`` (``hubembed.encoder``): ``word_tokenizer``, ``embed_tokens``,
``embed_words``. It uses the encoder's shared steps (``plan``, ``_rows``, ``_stream``, ``context``) and keeps the
word tokenizer, built once from the preprocessor's vocab file and casing.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Sequence, Tuple

from hubembed._pipeline import tokens
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.layers import LayerSpec
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.texts import check_texts
from hubembed._pipeline.tokens import SUBWORD, TokenEmbeddings, WordEmbeddings, to_words
from hubembed.errors import InputError


class TokenLevel:
    """Token- and word-level entry points (see the module's docstring); mixed into ``Encoder``."""

    handle: str
    signature: Any
    preprocessor: Any
    _lazy: threading.RLock
    _word_tokenizer: Optional[tokens.WordTokenizer]

    def word_tokenizer(self) -> tokens.WordTokenizer:
        """The word tokenizer matching the preprocessor (its vocab file and casing), built once.

        Raises:
            InputError: neither the encoder nor its preprocessor exports a WordPiece vocab file.
        """
        with self._lazy:
            if self._word_tokenizer is None:
                self._word_tokenizer = tokens.word_tokenizer_for(self.preprocessor, self.signature)
            if self._word_tokenizer is None:
                raise InputError(
                    f"{self.handle}: word and token spans need a WordPiece vocab file, and neither "
                    f"the encoder nor its preprocessor exports one"
                )
        return self._word_tokenizer

    def embed_tokens(
        self,
        texts: Sequence[str],
        *,
        layers: LayerSpec = -1,
        combine: str = "mean",
        weights=None,
        gamma: float = 1.0,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        spec: Optional[EmbedSpec] = None,
        prompt: Optional[str] = None,
        prompt_name: Optional[str] = None,
    ) -> List[TokenEmbeddings]:
        """Per text: its WordPiece tokens (no [CLS]/[SEP]), their character spans and vectors.

        Args:
            texts: strings (not pairs).
            layers, combine, weights, gamma, long, stride, prompt, prompt_name: as ``EmbedSpec`` (or ``spec=``: its
                token part); a prompt is the tokens' context, not among them (spans are into the texts as given).
            batch_size, max_tokens: as ``embed``.

        Returns:
            a ``TokenEmbeddings`` per text: tokens, ids, spans [n, 2], vectors [n, D].
        """
        spec = EmbedSpec.make(
            spec,
            layers=layers,
            combine=combine,
            weights=weights,
            gamma=gamma,
            long=long,
            stride=stride,
            prompt=prompt,
            prompt_name=prompt_name,
        )
        return _token_embeddings(self, texts, spec.for_tokens(), batch_size, max_tokens)[0]

    def embed_words(
        self,
        texts: Sequence[str],
        *,
        subword: str = "first",
        layers: LayerSpec = -1,
        combine: str = "mean",
        weights=None,
        gamma: float = 1.0,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        long: str = "window",
        stride: Optional[int] = None,
        spec: Optional[EmbedSpec] = None,
        split_into_words: bool = False,
        prompt: Optional[str] = None,
        prompt_name: Optional[str] = None,
    ) -> List[WordEmbeddings]:
        """Per text: its words with character spans, each a vector made from its sub-word pieces.

        Args:
            texts: strings (not pairs); with ``split_into_words=True``, lists of the caller's own words (as Hugging
                Face's ``is_split_into_words``, for token-level tasks such as NER): one vector per given word,
                from the pieces of that word (joined by single spaces, which spans refer to); a word that yields
                no piece gets zeros and its index in ``no_piece``.
            subword: first | last | mean | max | first_last ([first, last], 2x wide).
            layers, combine, weights, gamma, long, stride, prompt, prompt_name: as ``embed_tokens``.
            batch_size, max_tokens: as ``embed``.

        Returns:
            a ``WordEmbeddings`` per text: words, spans [n, 2] (``text[s:e] == word``), vectors [n, D].
        """
        if subword not in SUBWORD:
            raise InputError(f"subword={subword!r}; valid: {', '.join(SUBWORD)}")
        spec = EmbedSpec.make(
            spec,
            layers=layers,
            combine=combine,
            weights=weights,
            gamma=gamma,
            long=long,
            stride=stride,
            prompt=prompt,
            prompt_name=prompt_name,
        )
        if split_into_words:
            given = [tokens.join_words(_word_list(i, ws)) for i, ws in enumerate(texts)]
            tok, _ = _token_embeddings(self, [t for t, _ in given], spec.for_tokens(), batch_size, max_tokens)
            return [tokens.to_given_words(te, texts[i], given[i][1], subword) for i, te in enumerate(tok)]
        tok, words = _token_embeddings(self, texts, spec.for_tokens(), batch_size, max_tokens)
        return [to_words(te, w, subword) for te, w in zip(tok, words)]


def _token_embeddings(
    enc: Any, texts: Sequence, spec: EmbedSpec, batch_size: int, max_tokens: Optional[int]
) -> Tuple[List[TokenEmbeddings], list]:
    """Per text: its word pieces (no [CLS]/[SEP], no prompt) with spans and vectors; and the word tokenizer's words."""
    texts = check_texts(texts, pairs=False)
    prompt = enc.prompt_text(spec)
    plan = enc.plan(spec)
    wt = enc.word_tokenizer()
    words = wt.words(texts)
    rows, info = enc._rows(texts, long=spec.long, stride=spec.stride, word_ids=[w.ids for w in words], prompt=prompt)
    out: List[Optional[TokenEmbeddings]] = [None] * len(texts)
    for t, tt in enc._stream(rows, info, plan, batch_size, max_tokens):
        w = words[t]
        n = len(tt.ids) - tt.head - 1  # content tokens kept (after truncation)
        vec = plan.combine.apply(tt.vectors)[tt.head : tt.head + n]
        out[t] = TokenEmbeddings(
            texts[t], wt.piece_strings(w.ids[:n]), w.ids[:n], w.piece_spans[:n], vec, tt.n_windows, tt.truncated
        )
    info.spec = spec.token_record(plan, **enc.context())
    info.report()
    return out, words


def _word_list(i: int, words) -> list:
    """Row i of pre-tokenized input: a list of strings."""
    if isinstance(words, (str, bytes)) or not isinstance(words, (list, tuple)):
        raise InputError(
            f"row {i}: split_into_words=True takes a list of words per text (got {type(words).__name__}); pass "
            f"plain strings without split_into_words"
        )
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise InputError(f"row {i}: words must be strings (got {bad[0]!r})")
    return list(words)
