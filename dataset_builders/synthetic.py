"""A full-size synthetic NIKL set: the real split sizes and length distributions, text we write ourselves.

The 2024 corpus is licensed and never committed; this writes files with its *shape* so the commands can be
tried at full size: 506 train / 102 dev / 408 test dialogues, two speakers each, 1–6 subject keywords,
characters per dialogue, utterances per dialogue, characters per utterance and summary lengths drawn from
the percentiles in the task notes (piecewise-linear between them), and the raw data's quirks (``name1``,
``xx``, ``어~``-style fillers, ``&company-name&``/``&address&``, empty utterances, repeated phrases).
The sentences are generated from a small phrase bank written for this project; they make no sense as
conversations, and they are not meant to. ``tools build-synthetic-data`` writes them; the benchmarks and the
full-size tests use them too.
"""

from __future__ import annotations

import bisect
import json
import random
import statistics
from pathlib import Path

from common.io import write_json

SIZES = {"train": 506, "dev": 102, "test": 408}
QUANTILES = (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)
# Percentiles 0/10/50/90/99/100 of the real splits (../shared/notes/nikl-task.md); train follows dev.
DIALOGUE_CHARS = {"dev": (1014, 1559, 2449, 3668, 3991, 4362), "test": (728, 1130, 2109, 3807, 5251, 6296)}
UTTERANCES = {"dev": (10, 15, 21, 34, 46, 69), "test": (4, 10, 20, 38, 60, 77)}
UTTERANCE_CHARS = (1, 23, 78, 211, 472, 1287)
SUMMARY_CHARS = (185, 274, 376, 577, 680, 731)
EMPTY_UTTERANCE_RATE = 0.002  # 23 empty utterances among ~11,000 in train

TOPICS = ["여행", "음식", "주말", "여가 생활", "회사", "학교", "가족", "건강", "운동", "취미", "영화", "날씨",
          "쇼핑", "이사", "반려동물", "요리", "게임", "음악", "공부", "친구", "연애", "경제", "교통", "계절"]
FILLERS = ["어~", "음~", "그~", "아~", "에~", "뭐~"]
SENTENCES = [
    "요즘 {topic} 때문에 정신이 없어", "name1이랑 지난주에 {topic} 이야기를 한참 했어", "나는 {topic} 쪽은 잘 몰라서 그냥 듣기만 했지",
    "그래서 결국 &company-name& 근처에서 다시 만나기로 했어", "xx에서 본 건데 생각보다 괜찮더라고", "&address& 쪽으로 가면 조금 더 싸다던데",
    "그게 말이 쉽지 막상 해 보면 어렵잖아", "맞아 맞아 나도 그렇게 생각해", "아니 그건 좀 아닌 것 같은데", "다음 달쯤에 한 번 더 해 보려고",
    "name2도 같이 가자고 했는데 시간이 안 된대", "예전에는 주말마다 했었는데 요즘은 통 못 해", "돈이 생각보다 많이 들어서 고민이야",
    "그래도 한 번쯤은 해 볼 만하지 않을까", "사진을 찍어 놨는데 나중에 보여 줄게", "그때 날씨가 너무 추워서 금방 돌아왔어",
    "아 진짜? 나는 처음 들어 보는 얘기다", "그거 하려면 아침 일찍 일어나야 돼", "우리 동네에도 비슷한 데가 하나 생겼어",
    "요새 다들 그거 하느라고 바쁘더라", "솔직히 나는 집에서 쉬는 게 제일 좋아", "한 달에 한 번 정도는 꼭 챙기려고 해",
    "그 얘기 들으니까 나도 하고 싶어진다", "처음에는 좀 어색했는데 금방 익숙해졌어", "다음에 시간 되면 같이 가 보자",
    "그러니까 내 말이 그 말이야", "그건 사람마다 다른 것 같아", "나는 {topic} 하면 제일 먼저 엄마 생각이 나",
    "그 가게 사장님이 되게 친절하셨어", "요즘 물가가 너무 올라서 뭘 하기가 겁나", "그래서 그냥 인터넷으로 주문해 버렸어",
]
SUMMARY_SENTENCES = [
    "{a}와 {b}는 {topic}에 대해 이야기를 나누었다.", "{a}는 최근 {topic} 때문에 바쁘다고 말했다.",
    "{b}는 {topic}에 대한 자신의 경험을 이야기하며 다음에 함께 해 보자고 제안하였다.",
    "{a}는 비용이 많이 들어 고민이라고 하였고, {b}는 그래도 한 번쯤 해 볼 만하다고 답하였다.",
    "두 사람은 {topic}와 관련된 동네 가게와 가격에 대해서도 의견을 나누었다.",
    "{b}는 예전에는 자주 했지만 요즘은 시간이 없어 못 한다고 말했다.",
    "{a}는 집에서 쉬는 것을 좋아한다고 말했다.", "마지막으로 두 사람은 다음 달에 다시 만나기로 하였다.",
]


def quantile(points: tuple[float, ...], u: float) -> float:
    """The value at probability ``u`` (0 ≤ u < 1) of the distribution whose 0/10/50/90/99/100th percentiles
    are ``points``, linear between them."""
    i = min(bisect.bisect_right(QUANTILES, u), len(QUANTILES) - 1)
    lo_q, hi_q, lo, hi = QUANTILES[i - 1], QUANTILES[i], points[i - 1], points[i]
    return lo + (hi - lo) * (u - lo_q) / (hi_q - lo_q)


def quantile_draw(rng: random.Random, points: tuple[float, ...]) -> float:
    """A draw from that distribution."""
    return quantile(points, rng.random())


def text_of_length(rng: random.Random, length: int, topics: list[str], bank: list[str], spoken: bool = True) -> str:
    """Sentences from ``bank`` cut to ``length`` characters; ``spoken`` adds fillers, repeated words and
    loose punctuation, as transcribed speech has."""
    parts: list[str] = []
    size = 0
    while size < length:
        sentence = rng.choice(bank).format(topic=rng.choice(topics))
        if spoken and rng.random() < 0.25:
            sentence = f"{rng.choice(FILLERS)} {sentence}"
        if spoken and rng.random() < 0.05:
            word = sentence.split()[-1]
            sentence = f"{sentence} {word} {word}"
        parts.append(sentence + (rng.choice([".", "?", "~", "."]) if spoken else ""))
        size += len(parts[-1]) + 1
    text = " ".join(parts)[:length]
    return text[:-1] + "." if text.endswith(" ") else text  # exactly `length` characters, no trailing space


def dialogue(rng: random.Random, split: str, index: int) -> dict:
    shape = "test" if split == "test" else "dev"
    total = round(quantile_draw(rng, DIALOGUE_CHARS[shape]))
    count = max(2, round(quantile_draw(rng, UTTERANCES[shape])))
    raw = [quantile_draw(rng, UTTERANCE_CHARS) for _ in range(count)]
    scale = total / sum(raw)
    lengths = [min(UTTERANCE_CHARS[-1], max(1, round(value * scale))) for value in raw]
    topics = rng.sample(TOPICS, rng.randint(1, 6))
    speakers = [f"SD2{rng.randrange(100000, 999999)}", f"SD2{rng.randrange(100000, 999999)}"]
    turn = 0
    conversation = []
    for length in lengths:
        turn = turn if rng.random() < 0.15 else 1 - turn  # now and then one speaker goes on
        empty = rng.random() < EMPTY_UTTERANCE_RATE
        conversation.append({"speaker": speakers[turn],
                             "utterance": "" if empty else text_of_length(rng, length, topics, SENTENCES)})
    output = ""
    if split != "test":
        bank = [sentence.replace("{a}", speakers[0]).replace("{b}", speakers[1]) for sentence in SUMMARY_SENTENCES]
        output = text_of_length(rng, round(quantile_draw(rng, SUMMARY_CHARS)), topics, bank, spoken=False)
    return {"id": f"nikl-synth-{split}-{index:06d}",
            "input": {"conversation": conversation, "subject_keyword": topics}, "output": output}


def make_split(split: str, count: int | None = None, seed: int = 0) -> list[dict]:
    rng = random.Random(f"{seed}-{split}")
    return [dialogue(rng, split, index + 1) for index in range(SIZES[split] if count is None else count)]


def write_split(out: Path, split: str, seed: int = 0, count: int | None = None) -> Path:
    """``out/일상대화요약_{split}.json``: the split's dialogues (``count`` of them, default the real split's size)."""
    path = Path(out) / f"일상대화요약_{split}.json"
    write_json(path, make_split(split, count, seed))
    return path


def percentiles(values: list[int]) -> str:
    ordered = sorted(values)
    picks = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in QUANTILES]
    return "/".join(str(value) for value in picks) + f" (mean {statistics.fmean(values):.0f})"


def describe(path: Path) -> str:
    """One line on a split file: how many dialogues, and the percentiles of their characters and utterances."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    chars = [sum(len(turn["utterance"]) for turn in item["input"]["conversation"]) for item in data]
    turns = [len(item["input"]["conversation"]) for item in data]
    return (f"{len(data)} dialogues; chars per dialogue p0/10/50/90/99/100 {percentiles(chars)}; "
            f"utterances {percentiles(turns)}")
