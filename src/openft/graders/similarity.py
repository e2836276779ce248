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
Princeton WordNet 3.0 from Debian's `wordnet-base` package (/usr/share/wordnet; `apt-get
install wordnet-base`) or an NLTK data folder; without either the metric is refused (400).
`cosine` needs an embedding model, which the grader does not serve: refused (400), as OpenAI
refuses it outside evals."""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")  # Debian's `wordnet-base`: Princeton WordNet 3.0
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


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
    """NLTK's reader on Debian's WordNet, or on NLTK's own data, or None."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class DebianWordNet(WordNetCorpusReader):
        """Debian's database lacks the `lexnames` file NLTK's reader opens first: the 45
        lexicographer files of WordNet 3.0, numbered as lexnames(5WN) lists them. And the
        reader maps a database that is not NLTK's own WordNet 3.0 onto it, loading NLTK's."""

        def open(self, fileid):
            if fileid == "lexnames":
                categories = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
                lines = (f"{n:02d}\t{name}\t{categories[name.split('.')[0]]}\n" for n, name in enumerate(LEXNAMES))
                return io.StringIO("".join(lines))
            return super().open(fileid)

        def map_wn(self, version="wordnet"):
            return None  # NLTK's `wordnet` is this same WordNet 3.0: no synsets to map

    if (DEBIAN_WORDNET / "data.noun").exists():
        if str(DEBIAN_WORDNET) not in nltk.data.path:  # NLTK reads corpora only from folders on its path
            nltk.data.path.append(str(DEBIAN_WORDNET))
        with warnings.catch_warnings():  # "multilingual functions are not available": not used
            warnings.simplefilter("ignore")
            return DebianWordNet(str(DEBIAN_WORDNET), None)
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        return None
