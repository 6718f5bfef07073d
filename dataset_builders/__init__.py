"""Converters from NIKL "일상 대화 요약" task files into Axolotl SFT and DPO data."""
