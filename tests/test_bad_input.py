"""Bad input to the training app, as a user types it: each case exits with code 2 and one line on
stderr that names the bad key and value and says what is expected, with no traceback. The cases run
``ppo-train``'s own entry point (``ppo_core.train.cli``) in-process; tests/test_cli.py runs a few
through a real subprocess."""

import sys

import pytest

from ppo_core import train

TEXT = ("env=text_bandit", "agent=lm")
CASES = [
    # numbers outside their meaning
    (("algo.gamma=1.5",), "algo.gamma=1.5 is invalid; expected >= 0 and <= 1"),
    (("algo.gamma=-0.1",), "algo.gamma=-0.1 is invalid; expected >= 0 and <= 1"),
    (("algo.gae_lambda=2",), "algo.gae_lambda=2.0 is invalid; expected >= 0 and <= 1"),
    (("algo.learning_rate=0",), "algo.learning_rate=0.0 is invalid; expected > 0"),
    (("algo.learning_rate=-1e-3",), "algo.learning_rate=-0.001 is invalid; expected > 0"),
    (("algo.learning_rate=nan",), "algo.learning_rate=nan is invalid; expected > 0"),
    (("algo.learning_rate=inf",), "algo.learning_rate=inf is invalid; expected > 0"),
    (("algo.num_steps=0",), "algo.num_steps=0 is invalid; expected >= 1"),
    (("algo.clip_eps=-0.2",), "algo.clip_eps=-0.2 is invalid; expected > 0"),
    (("algo.update_epochs=0",), "algo.update_epochs=0 is invalid; expected >= 1"),
    (("algo.num_minibatches=0",), "algo.num_minibatches=0 is invalid; expected >= 1"),
    (("algo.adam_eps=0",), "algo.adam_eps=0.0 is invalid; expected > 0"),
    (("algo.ent_coef=-0.01",), "algo.ent_coef=-0.01 is invalid; expected >= 0"),
    (("algo.vf_coef=-1",), "algo.vf_coef=-1.0 is invalid; expected >= 0"),
    (("algo.vf_learning_rate=0",), "algo.vf_learning_rate=0.0 is invalid; expected > 0"),
    (("algo.early_stop_kl=0",), "algo.early_stop_kl=0.0 is invalid; expected > 0"),
    (("algo.max_grad_norm=nan",), "algo.max_grad_norm=nan is invalid; expected a finite number"),
    (("env.num_envs=0",), "env.num_envs=0 is invalid; expected >= 1"),
    (("env.num_envs=-4",), "env.num_envs=-4 is invalid; expected >= 1"),
    (("env.clip_obs=0",), "env.clip_obs=0.0 is invalid; expected > 0"),
    (("torch_threads=0",), "torch_threads=0 is invalid; expected >= 1"),
    (("eval_episodes=-1",), "eval_episodes=-1 is invalid; expected >= 0"),
    (("eval_every=-5",), "eval_every=-5 is invalid; expected >= 0"),
    (("checkpoint_every=-1",), "checkpoint_every=-1 is invalid; expected >= 0"),
    (("total_timesteps=0",), "total_timesteps=0 is invalid; expected >= 1"),
    (("seed=-1",), "seed=-1 is invalid; expected >= 0"),
    (("stop_at_return=475", "stop_after_evals=0"), "stop_after_evals=0 is invalid; expected >= 1"),
    (("agent.hidden_sizes=[64,0]",), "agent.hidden_sizes=[64, 0] is invalid; expected >= 1"),
    (("env=pendulum", "agent.sde_sample_freq=0"), "agent.sde_sample_freq=0 is invalid; expected >= 1"),
    (("algo=trpo", "algo.max_kl=0"), "algo.max_kl=0.0 is invalid; expected > 0"),
    (("algo=trpo", "algo.damping=-1"), "algo.damping=-1.0 is invalid; expected >= 0"),
    (("algo=trpo", "algo.cg_iters=0"), "algo.cg_iters=0 is invalid; expected >= 1"),
    (("algo=trpo", "algo.backtrack_ratio=1"), "algo.backtrack_ratio=1.0 is invalid; expected > 0 and < 1"),
    (("algo=trpo", "algo.vf_iters=-1"), "algo.vf_iters=-1 is invalid; expected >= 0"),
    (("algo=reinforce", "algo.vf_learning_rate=0"), "algo.vf_learning_rate=0.0 is invalid; expected > 0"),
    # choices
    (("algo.surrogate=clipped",), "algo.surrogate='clipped' is invalid; expected one of clip, kl_penalty"),
    (("agent.activation=sigmoid",), "agent.activation='sigmoid' is invalid; expected one of tanh, relu, elu"),
    (("env.vectorization=threads",), "env.vectorization='threads' is invalid; expected one of auto, sync"),
    (("env=nosuch",), "env=nosuch is unknown; expected one of acrobot, cartpole"),
    (("algo=sac",), "algo=sac is unknown; expected one of ppo, reinforce, trpo"),
    (("agent=cnn",), "agent=cnn is unknown; expected one of lm, mlp"),
    # keys and types
    (("foo=1",), "Key 'foo' not in 'TrainConfig'"),
    (("algo.clip_epz=0.1",), "Key 'clip_epz' not in 'PPOConfig'"),
    (("seed=abc",), "Value 'abc' of type 'str' could not be converted to Integer"),
    (("algo.gamma=[1,2]",), "could not be converted to Float"),
    (("algo.gamma=[1,",), "cannot parse the overrides algo.gamma=[1,"),
    # a multirun sweep: every swept value is checked before the first run starts
    (("-m", "algo.learning_rate=1e-3,-1"), "algo.learning_rate=-1.0 is invalid; expected > 0"),
    (("--multirun", "algo=ppo,sac"), "algo=sac is unknown; expected one of ppo, reinforce, trpo"),
    (("-m", "seed=range(-2,1)"), "seed=-2 is invalid; expected >= 0"),
    (("env=gym",), "env.id is required and has no value"),
    # renamed and removed settings
    (("algo.target_kl=0.1",), "algo.target_kl was renamed algo.early_stop_kl in ppo-core 0.2"),
    (("env.beta=0.1",), "env.beta was renamed objective.kl_coef in ppo-core 0.2"),
    (("algo.objective=kl_penalty",), "algo.objective was renamed algo.surrogate in ppo-core 0.2"),
    (("algo.advantage_level=step",), "algo.advantage_level was removed in ppo-core 0.2"),
    (("agent.trim_padding=rollout",), "agent.trim_padding=rollout was removed in ppo-core 0.2"),
    # the text bandit's settings, refused before any model is loaded
    ((*TEXT, "env.temperature=0"), "env.temperature=0.0 is invalid; expected > 0"),
    ((*TEXT, "env.max_new_tokens=0"), "env.max_new_tokens=0 is invalid; expected >= 1"),
    ((*TEXT, "env.prompt_overflow=drop"), "env.prompt_overflow='drop' is invalid; expected one of error, truncate"),
    ((*TEXT, "env.reward_source=gold"), "env.reward_source was renamed env.reward in ppo-core 0.3; write env.reward=gold"),
    ((*TEXT, "objective.kl_estimator=k5"), "objective.kl_estimator='k5' is invalid; expected one of k1, k2, k3, exact"),
    ((*TEXT, "objective.kl_placement=both"), "objective.kl_placement='both' is invalid; expected one of reward, token_reward, loss"),
    ((*TEXT, "objective.kl_coef=-1"), "objective.kl_coef=-1.0 is invalid; expected >= 0"),
    ((*TEXT, "objective.kl_coef_target=0"), "objective.kl_coef_target=0.0 is invalid; expected > 0"),
    ((*TEXT, "objective.ptx_coef=-1"), "objective.ptx_coef=-1.0 is invalid; expected >= 0"),
    ((*TEXT, "objective.ptx_batch_size=0"), "objective.ptx_batch_size=0 is invalid; expected >= 1"),
    ((*TEXT, "agent.critic=twin"), "agent.critic='twin' is invalid; expected one of head, separate"),
    ((*TEXT, "agent.trim_padding=often"), "agent.trim_padding='often' is invalid; expected one of pack"),
    ((*TEXT, "agent.exit_check_every=0"), "agent.exit_check_every=0 is invalid; expected >= 1"),
]


@pytest.mark.parametrize("overrides, expected", CASES, ids=[" ".join(o) for o, _ in CASES])
def test_bad_input_is_one_line_and_exit_code_2(overrides, expected, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ppo-train", *overrides, "progress=false"])
    with pytest.raises(SystemExit) as exit_:
        train.cli()
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2, stderr
    assert "Traceback" not in stderr and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert expected in stderr, stderr
    assert not (tmp_path / "outputs").exists()  # refused before hydra made a run directory
