"""`text_similarity`'s metrics, each one call into the library that defines it (GRADERS-GUIDE
names rapidfuzz; BLEU, GLEU and METEOR are NLTK's, ROUGE is Google's rouge-score):

- `fuzzy_match`: rapidfuzz `fuzz.WRatio` on `utils.default_process`ed text / 100, the scorer
  OpenAI's own guide uses in its Python-grader version of fuzzy matching;
- `bleu`: NLTK `sentence_bleu` (4-gram, equal weights) with `SmoothingFunction().method1`, so a
  short answer missing a 4-gram scores above 0; `gleu`: NLTK `sentence_gleu`; `meteor`: NLTK
  `single_meteor_score` on WordNet. All three on NLTK's word tokenizer (`NLTKWordTokenizer`,
  which needs no downloaded data);
- `rouge_1` … `rouge_5`, `rouge_l`: rouge-score's F-measure, without stemming.

`meteor` needs the WordNet database, which NLTK downloads and this server cannot: it reads
Princeton WordNet 3.0 from Debian's `wordnet-base` package (/usr/share/wordnet) or an NLTK data
folder; without either the metric is refused (400). `cosine` needs an embedding model, which
the grader does not serve: refused (400), as OpenAI refuses it outside evals."""

from __future__ import annotations

import functools
from pathlib import Path

WORDNET_FOLDERS = (Path("/usr/share/wordnet"),)


def unavailable(metric: str) -> str | None:
    """Why `metric` cannot be computed here, or None."""
    if metric == "cosine":
        return (
            "The `cosine` metric needs an embedding model, which openft's graders do not serve; "
            "use `fuzzy_match`, `bleu`, `gleu`, `meteor` or a `rouge_*` metric, or a python grader."
        )
    if metric == "meteor" and _wordnet() is None:
        return (
            "The `meteor` metric needs the WordNet database, which is not installed on this server "
            "(Debian's `wordnet-base` package, or NLTK's `wordnet` data)."
        )
    return None


def score(metric: str, text: str, reference: str) -> float:
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return fuzz.WRatio(text, reference, processor=utils.default_process) / 100
    if metric.startswith("rouge_"):
        name = "rouge" + metric.removeprefix("rouge_").upper()  # rouge_1 → rouge1, rouge_l → rougeL
        return _rouge(name).score(reference, text)[name].fmeasure
    hypothesis, expected = _words(text), _words(reference)
    if metric == "bleu":
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        return float(sentence_bleu([expected], hypothesis, smoothing_function=SmoothingFunction().method1))
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([expected], hypothesis))
    if metric == "meteor":
        from nltk.translate.meteor_score import single_meteor_score

        return float(single_meteor_score(expected, hypothesis, wordnet=_wordnet()))
    raise ValueError(f"unknown metric {metric}")


def _words(text: str) -> list[str]:
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer().tokenize(text)


@functools.cache
def _rouge(name: str):
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([name], use_stemmer=False)


@functools.cache
def _wordnet():
    """NLTK's reader on the first WordNet database found (Debian's, or NLTK's data), or None."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    for folder in WORDNET_FOLDERS:
        if (folder / "data.noun").exists():
            return WordNetCorpusReader(str(folder), None)
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        return None
