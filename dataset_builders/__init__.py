"""Converters from NIKL "일상 대화 요약" task files into Axolotl SFT and DPO data."""

from dataset_builders.nikl import Example, NiklDataError, Utterance, load_nikl
from dataset_builders.prompt import SYSTEM_PROMPTS, PromptBuilder, user_message

__all__ = ["Example", "NiklDataError", "PromptBuilder", "SYSTEM_PROMPTS", "Utterance", "load_nikl", "user_message"]
