"""A dialogue-summarisation task a tiny model can master on a CPU in a minute — in the NIKL schema.

`make demo` trains on it (`tools learnable-task` writes its files), so that every stage's number means
something: a model that learnt the task scores far above one that did not, and a bug that breaks learning
(the loss on the prompt, an untrained end-of-turn token, an inference prompt unlike the training one)
shows as a number that did not move.

Each dialogue is built from templates and the sample data's vocabulary (fillers ``어~ 음~ 그~``, ``name1``,
``xx``, ``&company-name&``, ``&address&``, empty utterances, repeated words): two speakers take turns, the
first raises a topic (its 1–3 subject keywords are the ``[Question]`` line's), and exactly one utterance,
by either speaker, states a detail — the day and the place they went. The reference summary is a fixed
function of the dialogue (:func:`reference_summary`) that only reading it can produce::

    SD2100503과 SD2100504는 주말, 등산 이야기를 했다. SD2100504는 토요일에 북한산에서 사진을 찍었다.

— the two speaker ids in order of appearance (with the particles their last digit's reading takes), the
keywords, who stated the detail, the day and the place. Dev and test are built from speaker pairs and
(topic, place) combinations that never occur in train, so memorising the train set gets the wording and
nothing else (:func:`wording_only_baseline` says what that scores). Everything is deterministic by seed.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

# Topics: four subject keywords (a dialogue's [Question] line lists 2–4 of them, in this order) and the first
# speaker's opening line.
TOPICS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("주말", "여가 생활", "등산", "운동"), "어~ 요즘 주말에 뭐 하면서 지내?"),
    (("취업", "면접", "이사", "회사"), "너 &company-name& 면접 본다고 하지 않았어?"),
    (("요리", "배달 음식", "찌개", "재료"), "name2 씨는 요리 자주 해요?"),
    (("반려동물", "강아지", "고양이", "입양"), "요즘 반려동물 키우는 사람 진짜 많더라."),
    (("여행", "휴가", "숙소", "비행기표"), "이번 여름휴가 어디로 갈 거야?"),
    (("드라마", "유튜브", "여가", "브이로그"), "너 요즘 무슨 드라마 봐?"),
    (("물가", "소비", "절약", "가계부"), "요즘 물가가 너무 많이 올랐어."),
    (("수면", "건강", "스트레스", "습관"), "name2야 너 요즘 잠은 잘 자?"),
    (("자기 계발", "공부", "학원", "시험"), "어~ 너 요즘 퇴근하고 뭐 해?"),
    (("휴대폰", "소비", "배터리", "카메라"), "너 &company-name&에서 새로 나온 휴대폰 봤어?"),
    (("김장", "가족", "배추", "명절"), "name1 씨 김장 하셨어요?"),
    (("도서관", "독서", "동네", "카페"), "우리 동네에 새로 도서관 생긴 거 알아?"),
    (("결혼식", "축의금", "친구", "교통"), "어~ 다음 주에 name1 결혼식 가?"),
    (("재택근무", "회사", "출퇴근", "집중"), "요즘 재택근무 해?"),
    (("다이어트", "운동", "식단", "수영"), "name2 씨 요즘 다이어트 한다면서요?"),
    (("날씨", "기후 변화", "장마", "출근길"), "어제 비 엄청 많이 왔지?"),
)
KEYWORDS_PER_DIALOGUE = (2, 4)
PLACES: tuple[str, ...] = (
    "북한산", "제주도", "부산", "도서관", "한강 공원", "시장", "영화관", "수영장", "박물관", "미술관",
    "서점", "카페", "동물원", "백화점", "헬스장", "시댁", "보호소", "서비스 센터", "학원", "놀이공원",
)
DAYS: tuple[str, ...] = ("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일")
# What the teller did there: as said in the dialogue, and as the summary reports it.
ACTIVITIES: tuple[tuple[str, str], ...] = (
    ("사진을 찍었어", "사진을 찍었다"), ("친구를 만났어", "친구를 만났다"), ("점심을 먹었어", "점심을 먹었다"),
    ("커피를 마셨어", "커피를 마셨다"), ("산책을 했어", "산책을 했다"), ("쇼핑을 했어", "쇼핑을 했다"),
    ("영화를 봤어", "영화를 봤다"), ("책을 읽었어", "책을 읽었다"), ("운동을 했어", "운동을 했다"),
    ("공연을 봤어", "공연을 봤다"), ("선물을 샀어", "선물을 샀다"), ("봉사 활동을 했어", "봉사 활동을 했다"),
)
# The one utterance with the detail. The day and the place always follow a word, so each is the same text
# (and the same tokens) in the dialogue and in the summary.
DETAIL_LINES: tuple[str, ...] = (
    "나 {day}에 {place}에서 {activity}.",
    "어~ 지난 {day}에 {place}에서 {activity}.",
    "음~ 나는 {day}에 name1이랑 {place}에서 {activity}.",
)
# Everything else the speakers say: the sample data's fillers and quirks, nothing the summary needs.
FILLERS: tuple[str, ...] = (
    "어~ 그렇구나.", "음~ 진짜?", "아~ 좋겠다.", "그~ 나도 그 생각 했어.", "맞아 맞아.", "오 진짜 진짜 좋다.",
    "name1도 그렇게 말하더라.", "xx 때문에 요즘 좀 바빠.", "&address& 쪽은 사람이 너무 많아.", "",
    "음~ 다음에 같이 가자.", "그래 좋아.", "아~ 그거 나도 들었어.", "어~ 시간 되면 한번 해 봐.",
    "그~ 생각보다 괜찮았어.", "진짜? 몰랐어.", "name2 씨는 어때요?", "응 그랬구나.",
)
TURNS = (4, 6)  # utterances per dialogue: the opening, 2–4 fillers and the detail, in between
SPEAKER_COUNT = 24
HELD_OUT = 0.2  # the share of speaker pairs and of (topic, place) combinations kept out of train
# Does a digit's Korean reading end in a consonant (영 일 삼 육 칠 팔) or a vowel (이 사 오 구)?
_CONSONANT_FINAL_DIGITS = set("013678")


def topic_particle(word: str) -> str:
    """은/는 after ``word`` (a speaker id ends in a digit, read in Korean)."""
    return "은" if word[-1] in _CONSONANT_FINAL_DIGITS else "는"


def with_particle(word: str) -> str:
    """과/와 after ``word``."""
    return "과" if word[-1] in _CONSONANT_FINAL_DIGITS else "와"


def reference_summary(conversation: Sequence[dict[str, str]], subject_keyword: Sequence[str]) -> str:
    """The reference summary, a function of the dialogue alone: the first two speakers in order of appearance,
    the keywords, and the detail utterance (who said it, the day, the place, what they did)."""
    speakers = list(dict.fromkeys(turn["speaker"] for turn in conversation))
    first, second = speakers[0], speakers[1]
    teller, day, place, activity = find_detail(conversation)
    return (f"{first}{with_particle(first)} {second}{topic_particle(second)} {', '.join(subject_keyword)} 이야기를 "
            f"했다. {teller}{topic_particle(teller)} {day}에 {place}에서 {REPORTED[activity]}.")


REPORTED = dict(ACTIVITIES)  # the activity as said → as the summary reports it


def find_detail(conversation: Sequence[dict[str, str]]) -> tuple[str, str, str, str]:
    """(speaker, day, place, activity as said) of the one utterance that states the detail."""
    found = []
    for turn in conversation:
        for template in DETAIL_LINES:
            match = _template_regex(template).fullmatch(turn["utterance"])
            if match:
                found.append((turn["speaker"], match["day"], match["place"], match["activity"]))
    if len(found) != 1:
        raise ValueError(f"a learnable-task dialogue states exactly one detail; this one states {len(found)}")
    return found[0]


@functools.cache
def _template_regex(template: str) -> re.Pattern[str]:
    """``template`` with its slots as named groups matching the values they take."""
    slots = {"day": DAYS, "place": PLACES, "activity": [said for said, _ in ACTIVITIES]}
    pattern = re.escape(template)
    for name, values in slots.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{'|'.join(map(re.escape, values))})")
    return re.compile(pattern)


@dataclass(frozen=True)
class Splits:
    """Which speaker pairs and (topic, place) combinations each split draws from (disjoint)."""

    speakers: tuple[str, ...]
    pairs: dict[str, list[tuple[str, str]]]
    topic_places: dict[str, list[tuple[int, str]]]


def plan_splits(rng: random.Random) -> Splits:
    """Speaker ids, then the pairs and (topic, place) combinations of train, dev and test: dev and test get
    disjoint held-out shares, train the rest, and every speaker talks in train."""
    speakers = tuple(sorted({f"SD2{rng.randrange(10**6):06d}" for _ in range(SPEAKER_COUNT * 4)})[:SPEAKER_COUNT])
    while True:
        pairs = list(combinations(speakers, 2))
        rng.shuffle(pairs)
        held = round(len(pairs) * HELD_OUT)
        train_pairs = pairs[held:]
        if {speaker for pair in train_pairs for speaker in pair} == set(speakers):
            break
    combos = [(topic, place) for topic in range(len(TOPICS)) for place in PLACES]
    rng.shuffle(combos)
    held_combos = round(len(combos) * HELD_OUT)
    return Splits(
        speakers=speakers,
        pairs={"train": train_pairs, "dev": pairs[:held // 2], "test": pairs[held // 2:held]},
        topic_places={"train": combos[held_combos:], "dev": combos[:held_combos // 2],
                      "test": combos[held_combos // 2:held_combos]},
    )


def make_dialogue(rng: random.Random, pair: tuple[str, str], topic: int, place: str) -> dict[str, Any]:
    """One dialogue (NIKL ``input``) of ``pair`` about ``topic`` whose detail happens at ``place``."""
    first, second = pair if rng.random() < 0.5 else pair[::-1]
    keywords, opening = TOPICS[topic]
    chosen = set(rng.sample(range(len(keywords)), rng.randint(*KEYWORDS_PER_DIALOGUE)))
    count = rng.randint(*TURNS)
    detail_at = rng.randrange(1, count)
    lines = [opening]
    for index in range(1, count):
        if index == detail_at:
            lines.append(rng.choice(DETAIL_LINES).format(day=rng.choice(DAYS), place=place,
                                                         activity=rng.choice(ACTIVITIES)[0]))
        else:
            lines.append(rng.choice(FILLERS))
    conversation = [{"speaker": (first, second)[index % 2], "utterance": line} for index, line in enumerate(lines)]
    return {"conversation": conversation,
            "subject_keyword": [word for index, word in enumerate(keywords) if index in chosen]}


def make_split(rng: random.Random, splits: Splits, split: str, size: int) -> list[dict[str, Any]]:
    """``size`` examples of ``split`` in the NIKL schema; test files carry ``"output": ""`` as the real ones do."""
    examples = []
    for number in range(1, size + 1):
        dialogue = make_dialogue(rng, rng.choice(splits.pairs[split]), *rng.choice(splits.topic_places[split]))
        output = "" if split == "test" else reference_summary(dialogue["conversation"], dialogue["subject_keyword"])
        examples.append({"id": f"learnable-{split}-{number:06d}", "input": dialogue, "output": output})
    return examples


DEFAULT_SIZES = {"train": 1000, "dev": 48, "test": 48}
SPLIT_FILE = "일상대화요약_{split}.json"  # the NIKL files' names, so every command reads them as it reads the corpus


def make_task(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The splits (``{"train": [...], "dev": [...], "test": [...]}`` by default), the same for the same seed
    and sizes; each split has its own random stream, so one split's size does not change another's examples."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    splits = plan_splits(random.Random(seed))
    return {split: make_split(random.Random(f"{seed}-{split}"), splits, split, size) for split, size in sizes.items()}


def write_task(output_dir: Path | str, seed: int = 0, sizes: dict[str, int] | None = None) -> list[Path]:
    """Write the splits as NIKL task files ``OUTPUT_DIR/일상대화요약_{split}.json`` (each atomically); returns
    their paths."""
    from common.io import write_json

    paths = []
    for split, examples in make_task(seed, sizes).items():
        path = Path(output_dir) / SPLIT_FILE.format(split=split)
        write_json(path, examples)
        paths.append(path)
    return paths
