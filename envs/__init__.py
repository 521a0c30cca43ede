"""Environments behind the torch ``VecEnv`` interface. Importing the package registers the text
bandit's single-step Gymnasium form as ``TextBandit-v0``."""

import gymnasium

if "TextBandit-v0" not in gymnasium.registry:
    gymnasium.register(id="TextBandit-v0", entry_point="envs.text_bandit:TextBanditEnv")
