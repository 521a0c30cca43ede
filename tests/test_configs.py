"""Every algorithm × task composes with its tuned preset; bad algorithm settings fail with one line."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_core.build import build_trainer
from ppo_core.config import ReinforceConfig, TRPOConfig, config_from_dict
from ppo_core.errors import ConfigError
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("ppo", "trpo", "reinforce")
ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "mountaincar": "MountainCar-v0",
        "mountaincar_continuous": "MountainCarContinuous-v0", "pendulum": "Pendulum-v1"}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env", sorted(ENVS))
def test_every_pair_composes_with_a_marked_tuned_preset(algo, env):
    config = make_config(f"algo={algo}", f"env={env}")
    assert config.algo.name == algo and config.env.id == ENVS[env]
    preset = ROOT / "conf" / "tuned" / f"{algo}_{env}.yaml"
    header = "".join(preset.read_text().splitlines(keepends=True)[:3])
    assert preset.read_text().startswith("# @package _global_") and "erified" in header


def test_tuned_values_land_and_command_line_overrides_win():
    config = make_config("algo=trpo", "env=cartpole")
    assert isinstance(config.algo, TRPOConfig)
    assert (config.env.num_envs, config.algo.num_steps, config.algo.damping, config.algo.vf_iters) == (8, 128, 1e-3, 20)
    assert config.total_timesteps == 100_000
    assert make_config("algo=trpo", "env=cartpole", "total_timesteps=1024").total_timesteps == 1024
    acrobot = make_config("algo=reinforce", "env=acrobot")
    assert isinstance(acrobot.algo, ReinforceConfig) and acrobot.algo.gae_lambda == 1.0
    assert acrobot.env.normalize_obs and acrobot.env.normalize_reward


def run_train(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ppo_core.train", *overrides, "total_timesteps=256", "progress=false"],
                          cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (("algo=trpo", "algo.max_kl=abc"), "override algo.max_kl=abc: Value 'abc' of type 'str' could not be converted to Float"),
        (("algo=trpo", "algo.clip_eps=0.1"), "Key 'clip_eps' not in 'TRPOConfig'"),
        (("algo=reinforce", "algo.baseline=maybe"), "override algo.baseline=maybe: Value 'maybe' is not a valid bool"),
        (("env=text_bandit", "agent=lm", "agent.top_k=5"), "Key 'top_k' not in 'LMAgentConfig'"),
    ],
)
def test_mistyped_algorithm_settings_name_the_key(tmp_path, overrides, expected):
    result = run_train(*overrides, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (("algo=trpo", "algo.max_kl=-1"), r"algo.max_kl=-1.0 is invalid; expected > 0"),
        (("algo=reinforce", "algo.num_minibatches=0"), r"algo.num_minibatches=0 is invalid; expected >= 1"),
        (("algo=reinforce", "agent.shared_trunk=true"), r"algo=reinforce fits the critic with its own optimiser"),
        (("stop_at_return=475", "stop_after_evals=0"), r"stop_after_evals=0 is invalid; expected >= 1"),
        (("stop_at_return=475",), r"stop_at_return=475.0 needs evaluations: eval_episodes >= 1 \(got 0\)"),
        (("algo.num_minibatches=0",), r"algo.num_minibatches=0 is invalid; expected >= 1"),
        (("algo.update_epochs=0",), r"algo.update_epochs=0 is invalid; expected >= 1"),
        (("algo.num_steps=0",), r"algo.num_steps=0 is invalid; expected >= 1"),
        (("env.num_envs=0",), r"env.num_envs=0 is invalid; expected >= 1"),
        (("algo.surrogate=kl_penalty", "algo.penalty_kl_target=0"), r"algo.penalty_kl_target=0.0 is invalid; expected > 0"),
        (("agent.activation=sigmoid",), r"agent.activation='sigmoid' is invalid; expected one of tanh, relu, elu"),
        (("env=pendulum", "agent.gsde=true", "agent.sde_sample_freq=0"), r"agent.sde_sample_freq=0 is invalid; expected >= 1"),
    ],
)
def test_unusable_algorithm_settings_are_config_errors(tmp_path, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        build_trainer(make_config(*overrides, "eval_episodes=0"), tmp_path)


def test_penalty_kl_target_is_only_read_by_the_kl_penalty_objective(tmp_path):
    trainer = build_trainer(make_config("algo.penalty_kl_target=0", "eval_episodes=0"), tmp_path)
    assert trainer.algorithm.kl_controller is None and "kl_controller" not in trainer.algorithm.state_dict()


@pytest.mark.parametrize("override, new_key", [
    ("env.beta=0.1", "objective.kl_coef"), ("env.kl_target=6", "objective.kl_coef_target"),
    ("env.ptx_coef=1", "objective.ptx_coef"), ("env.kl_placement=loss", "objective.kl_placement"),
    ("algo.target_kl=0.02", "algo.early_stop_kl"), ("algo.kl_target=0.01", "algo.penalty_kl_target"),
    ("algo.kl_beta_init=2", "algo.penalty_coef_init"),
])
def test_a_renamed_key_names_its_new_name(override, new_key):
    from ppo_core.api import make_config as compose

    with pytest.raises(ConfigError, match=rf"{override.split('=')[0]} was renamed {new_key} in ppo-core 0\.2; "
                                          rf"write {new_key}={override.split('=')[1]}"):
        compose(override)


def test_a_removed_key_says_what_runs_instead():
    from ppo_core.api import make_config as compose

    with pytest.raises(ConfigError, match="algo.advantage_level was removed in ppo-core 0.2: GAE always runs"):
        compose("algo.advantage_level=step")


def old_saved_config(**changes) -> dict:
    """The dict a 0.1 checkpoint holds for the text-bandit PPO config: 0.1's key names and values."""
    saved = dataclasses.asdict(make_config("env=text_bandit", "agent=lm", "algo.surrogate=kl_penalty",
                                           "objective.kl_coef=0.07", "objective.ptx_coef=2.0",
                                           "algo.early_stop_kl=0.03"))
    objective = saved.pop("objective")  # 0.1 kept the objective's terms in the env's settings
    saved["env"]["beta"], saved["env"]["kl_target"] = objective.pop("kl_coef"), objective.pop("kl_coef_target")
    del objective["name"]
    saved["env"].update(objective)
    saved["algo"]["target_kl"] = saved["algo"].pop("early_stop_kl")
    saved["algo"]["kl_target"] = saved["algo"].pop("penalty_kl_target")
    saved["algo"]["kl_beta_init"] = saved["algo"].pop("penalty_coef_init")
    saved["algo"]["objective"] = saved["algo"].pop("surrogate")
    saved["algo"]["advantage_level"] = "decision"
    saved["agent"]["trim_padding"] = "rollout"
    for key, value in changes.items():
        group, name = key.split("__")
        saved[group][name] = value
    return saved


def test_a_config_saved_by_0_1_loads_with_its_values_under_the_new_names():
    config = config_from_dict(old_saved_config())
    assert config.objective.name == "rlhf" and config.objective.kl_coef == 0.07
    assert config.objective.kl_coef_target is None and config.objective.ptx_coef == 2.0
    assert config.algo.early_stop_kl == 0.03 and config.algo.penalty_kl_target == 0.01
    assert config.algo.penalty_coef_init == 1.0 and not hasattr(config.algo, "advantage_level")
    assert config.algo.surrogate == "kl_penalty"
    assert config.agent.trim_padding == "minibatch"  # rollout's function, to ~1e-6
    assert config_from_dict(old_saved_config(agent__trim_padding=False)).agent.trim_padding == "none"


def test_a_0_1_config_with_a_removed_behaviour_names_the_version():
    with pytest.raises(ConfigError, match=r"written by ppo-core 0\.1 with algo\.advantage_level; 0\.2 removed it"):
        config_from_dict(old_saved_config(algo__advantage_level="step"))


def test_a_controller_state_of_0_1_restores_its_coefficient():
    from ppo_core.kl_control import PPOKLPenaltyController

    controller = PPOKLPenaltyController(1.0, 0.01)
    controller.load_state_dict({"beta": 0.125})
    assert controller.coef == 0.125 and controller.state_dict() == {"coef": 0.125}


def undocumented_fields(schema: type) -> list[str]:
    """Fields of ``schema`` (and its dataclass bases) without a docstring right below them."""
    import ast
    import inspect
    import textwrap

    missing = []
    for klass in schema.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, following in zip(body, [*body[1:], None]):
            documented = (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                          and isinstance(following.value.value, str))
            if isinstance(node, ast.AnnAssign) and not documented:
                missing.append(f"{klass.__name__}.{node.target.id}")
    return missing


def test_every_schema_field_has_a_docstring():
    from ppo_core.config import SCHEMAS, TrainConfig

    make_config()  # loads the plugins' schemas too
    schemas = [TrainConfig, *(schema for group in SCHEMAS.values() for schema in group.values())]
    assert {"text_bandit", "gym"} <= set(SCHEMAS["env"]) and {"lm", "mlp"} <= set(SCHEMAS["agent"])
    assert [field for schema in schemas for field in undocumented_fields(schema)] == []


def test_every_field_of_the_align_and_evaluate_schemas_has_a_docstring():
    import ppo_core.align.config as align_config
    from ppo_core.evaluate import EvaluateConfig

    schemas = [value for value in vars(align_config).values()
               if dataclasses.is_dataclass(value) and value.__module__ == align_config.__name__]
    assert len(schemas) >= 9
    assert [field for schema in [*schemas, EvaluateConfig] for field in undocumented_fields(schema)] == []


def test_the_docstring_check_sees_a_bare_field():
    @dataclasses.dataclass
    class Bare:
        documented: int = 1
        """Has one."""
        bare: int = 2

    assert undocumented_fields(Bare) == ["Bare.bare"]


def test_the_text_bandit_selects_instructgpts_objective_and_control_tasks_none():
    assert make_config("env=text_bandit", "agent=lm").objective.name == "rlhf"
    assert make_config("env=text_bandit", "agent=lm", "objective.ptx_coef=2").objective.ptx_coef == 2.0
    assert make_config("env=pendulum").objective.name == "none"


def test_an_objective_an_env_does_not_serve_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"objective=rlhf does not apply to env.kind='gym', which serves objective=none"):
        build_trainer(make_config("objective=rlhf", "eval_episodes=0"), tmp_path)


@pytest.mark.parametrize("override, message", [
    ("~env.beta", "write ~objective.kl_coef$"),
    ("+algo.target_kl=0.1", r"write \+algo.early_stop_kl=0.1$"),
    ("algo.objective=kl_penalty", "write algo.surrogate=kl_penalty$"),
    ("agent.trim_padding=rollout", r"agent.trim_padding=rollout was removed in ppo-core 0\.2; agent.trim_padding=minibatch"),
])
def test_old_overrides_keep_their_prefix_and_removed_values_name_their_successor(override, message):
    from ppo_core.config import reject_old_keys

    with pytest.raises(ConfigError, match=message):
        reject_old_keys([override])


def test_declared_choices_are_the_ones_the_code_accepts():
    from agents import lm, mlp
    from ppo_core.align import rl_config
    from ppo_core.config import ACTIVATIONS

    assert ACTIVATIONS == tuple(mlp.ACTIVATIONS)
    assert rl_config.CRITICS == lm.CRITICS and set(rl_config.TRIM_MODES) == set(lm.TRIM_MODES)


def test_a_rule_refuses_nan_and_infinity_and_lets_none_through_where_allowed():
    from ppo_core.config import PPOConfig
    from ppo_core.validation import validate, violations

    assert violations(PPOConfig()) == []  # early_stop_kl, vf_learning_rate: None
    assert violations(PPOConfig(early_stop_kl=float("nan"), clip_eps=float("inf"), gamma=True)) == [
        "gamma=True is invalid; expected >= 0 and <= 1",  # a bool is no number
        "clip_eps=inf is invalid; expected > 0",
        "early_stop_kl=nan is invalid; expected > 0",
    ]
    with pytest.raises(ConfigError, match=r"^algo.gamma=2 is invalid; expected >= 0 and <= 1$"):
        validate(PPOConfig(gamma=2), "algo.")


def test_align_settings_keep_their_documented_zeros_and_the_rl_stage_validates_its_overrides():
    from ppo_core.align.config import compose_align_config
    from ppo_core.align.errors import AlignError
    from ppo_core.align.stages import rl_train_config

    assert compose_align_config(["world.n_prompts=0"]).world.n_prompts == 0  # 0: the world size's default
    with pytest.raises(ConfigError, match=r"world.split=\[0.7, 1.5\] is invalid; expected >= 0 and <= 1"):
        compose_align_config(["world.split=[0.7,1.5]"])
    with pytest.raises(AlignError, match=r"env.temperature=0.0 is invalid; expected > 0"):
        rl_train_config(compose_align_config(["size=tiny", "rl.overrides=['env.temperature=0']"]))


def test_reward_model_samples_are_as_long_as_the_rl_completions_unless_set():
    from ppo_core.align.config import compose_align_config
    from ppo_core.align.stages import rl_train_config, rm_sample_tokens

    for overrides, expected in ((["size=small"], 28), (["size=tiny"], 16),
                                (["size=small", "rl.overrides=['env.max_new_tokens=20']"], 20),
                                (["size=small", "rm.max_new_tokens=12"], 12)):
        cfg = compose_align_config(overrides)
        assert rm_sample_tokens(cfg) == expected, overrides
        if cfg.rm.max_new_tokens is None:
            assert rm_sample_tokens(cfg) == rl_train_config(cfg).env.max_new_tokens
    with pytest.raises(ConfigError, match=r"rm.max_new_tokens=0 is invalid; expected >= 1"):
        compose_align_config(["rm.max_new_tokens=0"])
