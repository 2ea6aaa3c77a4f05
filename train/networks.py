"""Agent networks.

``RNNAgent`` is the recurrent agent of EPyMARL/PyMARL (fc -> GRUCell -> fc)
with parameter sharing and an agent-id one-hot (or one network per agent),
optionally with a message head (``train.comm``): the aggregated inbox joins
the input layer and ``msg_out`` is emitted from the new hidden state.
With ``recurrent=False`` (config key ``recurrent``) each core is a
feed-forward MLP instead (fc -> ReLU -> fc -> ReLU -> fc): no state crosses
steps, ``msg_out`` comes from the last hidden activation, and the exported
graph has no ``hidden`` input or ``hidden_out`` output. The team-level
``forward`` still takes and returns a ``hidden`` tensor (the input one is
ignored, the returned one is that last activation) so learners carry it
unchanged.
Training calls it on the whole team at once (``forward``, ``unroll``);
deployment calls ``AgentPolicy``, the per-agent view of the *same*
parameters with the signature of docs/design.md contract 4 and the agent id
folded in as a constant. The exporter exports ``AgentPolicy`` as it is.

Team size (docs/team-size.md): the agent id is a one-hot over ``max_agents``
slots (agent i is always slot i), so the same parameters act for any team of
n <= max_agents agents; ``forward`` and ``unroll`` take the team size from the
observations. Without parameter sharing there is one core per slot.
``max_agents`` defaults to the team's n, which gives exactly the network of
before. ``pad_agents`` and ``pad_state`` give the centralised parts (mixers,
critics) inputs of one width for any n <= max_agents.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..envs import EnvSpec
from .comm import AttentionAggregator, CommConfig, MessageHead, gather_inbox
from .config import ConfigError

NEG_INF = -1e10  # masked-out Q value; finite so ONNX and fp16 stay well defined


def team_slots(spec: EnvSpec, max_agents: int) -> int:
    """The slots a run's networks have: ``max_agents`` (the run key), 0 meaning the env's
    n. More slots than agents need an env that can change its team size."""
    m = max_agents or spec.n_agents
    if m < spec.n_agents:
        raise ConfigError(f"max_agents ({m}) must be >= the env's n_agents ({spec.n_agents})")
    if m > spec.n_agents and not spec.resizable:
        raise ConfigError(f"max_agents={m} needs an env that can change its team size; {spec.name!r} cannot (its spec is not resizable)")
    return m


def pad_agents(x: torch.Tensor, slots: int, dim: int = -1) -> torch.Tensor:
    """``x`` with its agent axis ``dim`` (size n <= slots) padded with zeros to ``slots``;
    ``x`` itself when n == slots, so a full team computes exactly what it did before."""
    n = x.shape[dim]
    if n == slots:
        return x
    shape = list(x.shape)
    shape[dim] = slots - n
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def pad_state(state: torch.Tensor, spec: EnvSpec, slots: int) -> torch.Tensor:
    """The state ``[..., state_dim]`` of a team of ``spec.n_agents`` laid out for ``slots``
    agents: each per-agent block (``spec.state_agent_blocks``) padded with zeros for the
    absent slots, the rest unchanged. Width ``spec.state_dim_at(slots)`` for any n; the
    state itself when n == slots."""
    n = spec.n_agents
    if n == slots:
        return state
    parts, at = [], 0
    for w in spec.state_agent_blocks:
        block = state[..., at : at + n * w].unflatten(-1, (n, w))
        parts.append(pad_agents(block, slots, dim=-2).flatten(-2))
        at += n * w
    parts.append(state[..., at:])
    return torch.cat(parts, dim=-1)


def masked_greedy(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """argmax over available actions (``avail`` bool or 0/1), last dim."""
    return torch.where(avail.bool(), q, torch.full_like(q, NEG_INF)).argmax(dim=-1)


class AgentCore(nn.Module):
    """[x, aggregated inbox] -> fc -> ReLU -> GRUCell -> fc (Q values or logits)
    and, when communicating, -> msg_out. One agent, any leading batch shape.

    ``recurrent=False``: [x, inbox] -> fc1 -> ReLU -> fc_hidden -> ReLU -> fc2;
    ``h`` is ignored on input and the returned "hidden" is the last hidden
    activation (``msg_out`` is emitted from it). The attention aggregator's
    query then sees the input only (there is no previous state)."""

    def __init__(self, in_dim: int, n_out: int, hidden_dim: int, comm: CommConfig | None = None, recurrent: bool = True) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.msg = MessageHead(comm, in_dim, hidden_dim) if comm is not None and comm.communicates else None
        if self.msg is not None and not recurrent and isinstance(self.msg.agg, AttentionAggregator):
            assert comm is not None
            self.msg.agg = AttentionAggregator(in_dim, 0, comm.msg_dim, comm.attn_dim, comm.top_k)  # query from the input alone
        self.fc1 = nn.Linear(in_dim + (self.msg.out_dim if self.msg is not None else 0), hidden_dim)
        if recurrent:
            self.rnn = nn.GRUCell(hidden_dim, hidden_dim)
        else:
            self.fc_hidden = nn.Linear(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_out)

    def mlp_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward core: [x, inbox] -> the last hidden activation (any leading shape)."""
        return F.relu(self.fc_hidden(F.relu(self.fc1(x))))

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None, msg_in: torch.Tensor | None = None, msg_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not self.recurrent:
            if self.msg is not None:
                if msg_in is None or msg_mask is None:
                    raise ValueError("this agent communicates: pass msg_in [b, k_max, d] and msg_mask [b, k_max]")
                x = torch.cat([x, self.msg.aggregate(x, x[..., :0], msg_in, msg_mask)], dim=-1)
            a = self.mlp_hidden(x)
            return self.fc2(a), a, None if self.msg is None else self.msg.emit(a)
        assert h is not None, "a recurrent core needs its hidden state"
        if self.msg is None:
            h = self.rnn(F.relu(self.fc1(x)), h)
            return self.fc2(h), h, None
        if msg_in is None or msg_mask is None:
            raise ValueError("this agent communicates: pass msg_in [b, k_max, d] and msg_mask [b, k_max]")
        c = self.msg.aggregate(x, h, msg_in, msg_mask)
        h = self.rnn(F.relu(self.fc1(torch.cat([x, c], dim=-1))), h)
        return self.fc2(h), h, self.msg.emit(h)


class RNNAgent(nn.Module):
    """The team's agents: shared parameters + agent id, or one core per agent."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        n_agents: int,
        hidden_dim: int = 64,
        agent_id: bool = True,
        last_action: bool = False,
        shared: bool = True,
        comm: CommConfig | None = None,
        k_max: int = 0,
        head: str = "q",
        action_scale: float = 1.0,
        recurrent: bool = True,
        max_agents: int = 0,
    ) -> None:
        super().__init__()
        self.recurrent = bool(recurrent)  # False: feed-forward cores, no hidden state in the exported graph
        if head not in ("q", "logits", "action"):
            raise ValueError(f"head must be q, logits or action, got {head!r}")
        self.head = head  # what the output is called in the exported graph
        self.continuous = head == "action"  # deterministic continuous actor: action_scale * tanh(output), no availability mask
        self.action_scale = float(action_scale)
        if self.continuous and last_action:
            raise ValueError("last_action one-hots need discrete actions")
        self.obs_dim, self.n_actions, self.n_agents = obs_dim, n_actions, n_agents
        self.max_agents = max_agents or n_agents  # id slots (and cores, unshared): any team of n <= max_agents
        if self.max_agents < n_agents:
            raise ValueError(f"max_agents ({self.max_agents}) must be >= n_agents ({n_agents})")
        self.communicates = comm is not None and comm.communicates
        if self.communicates and k_max < 1:
            raise ValueError("a communicating agent needs k_max >= 1 inbox slots")
        self.k_max = k_max if self.communicates else 0
        self.msg_dim = comm.msg_dim if self.communicates else 0
        self.hidden_dim = hidden_dim
        self.agent_id = agent_id and shared  # ids only make sense with shared weights
        self.last_action = last_action
        self.shared = shared
        in_dim = obs_dim + (self.max_agents if self.agent_id else 0) + (n_actions if last_action else 0)
        self.in_dim = in_dim
        n_cores = 1 if shared else self.max_agents
        self.cores = nn.ModuleList(AgentCore(in_dim, n_actions, hidden_dim, comm, self.recurrent) for _ in range(n_cores))
        self.register_buffer("ids", torch.eye(self.max_agents), persistent=False)

    def with_team_size(self, n_agents: int) -> "RNNAgent":
        """This network (the same parameters, shared) sized for a team of ``n_agents``
        <= ``max_agents``: what ``init_hidden`` and the team policies allocate."""
        if not 1 <= n_agents <= self.max_agents:
            raise ConfigError(f"this team's networks have {self.max_agents} agent slots (max_agents); cannot act for {n_agents} agents")
        if n_agents == self.n_agents:
            return self
        view = copy.copy(self)  # a new attribute dict over the same parameter and module dicts
        view.n_agents = n_agents
        return view

    def init_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.n_agents, self.hidden_dim)

    def build_inputs(self, obs: torch.Tensor, last_action: torch.Tensor | None) -> torch.Tensor:
        """[B, n, obs] (+ ids of slots 0..n-1, + last action one-hot) -> [B, n, in_dim]."""
        parts = [obs]
        n = obs.shape[1]
        if self.agent_id:
            parts.append(self.ids[:n].expand(obs.shape[0], -1, -1))
        if self.last_action:
            if last_action is None:
                last_action = obs.new_zeros(obs.shape[0], n, self.n_actions)
            parts.append(last_action)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else obs

    def forward(
        self,
        obs: torch.Tensor,
        hidden: torch.Tensor | None,
        last_action: torch.Tensor | None = None,
        msg_in: torch.Tensor | None = None,
        msg_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """obs [B, n, obs_dim], hidden [B, n, h] (+ msg_in [B, n, k, d], msg_mask [B, n, k])
        -> q [B, n, A], hidden [B, n, h], msg_out [B, n, d] (None without messages).
        Feed-forward (``recurrent=False``): ``hidden`` is ignored (may be None) and
        the returned one is the last hidden activation."""
        x = self.build_inputs(obs, last_action)
        B, n = x.shape[:2]
        if self.shared:
            mi = None if msg_in is None else msg_in.reshape(B * n, *msg_in.shape[2:])
            mm = None if msg_mask is None else msg_mask.reshape(B * n, -1)
            hh = None if hidden is None else hidden.reshape(B * n, -1)
            q, h, m = self.cores[0](x.reshape(B * n, -1), hh, mi, mm)
            return q.view(B, n, -1), h.view(B, n, -1), None if m is None else m.view(B, n, -1)
        outs = [
            core(x[:, i], None if hidden is None else hidden[:, i], None if msg_in is None else msg_in[:, i], None if msg_mask is None else msg_mask[:, i])
            for i, core in enumerate(self.cores[:n])
        ]
        msg = None if outs[0][2] is None else torch.stack([o[2] for o in outs], 1)
        return torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs], 1), msg

    def step(
        self,
        obs: torch.Tensor,
        hidden: torch.Tensor,
        last_action: torch.Tensor | None,
        prev_msg: torch.Tensor | None,
        inbox_idx: torch.Tensor | None,
        inbox_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One team step with routing: each agent hears ``prev_msg [B, n, d]``
        (last step's ``msg_out``) from the senders in its inbox."""
        if not self.communicates:
            return self(obs, hidden, last_action)
        msg_in, msg_mask = gather_inbox(prev_msg, inbox_idx, inbox_mask)
        return self(obs, hidden, last_action, msg_in, msg_mask)

    def unroll(
        self,
        obs: torch.Tensor,
        last_action: torch.Tensor | None = None,
        inbox_idx: torch.Tensor | None = None,
        inbox_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Q values of whole sequences from a zero hidden state, in one go.

        obs [B, T, n, obs_dim] (+ last_action [B, T, n, A]) -> q [B, T, n, A].
        Same maths as calling ``forward`` step by step, but the input and
        output layers run once over all steps and the recurrence runs in
        ATen's fused GRU loop (the GRUCell's own weights), which makes the
        learner's update several times faster than a Python loop over time.

        Communicating agents couple across agents and steps (a message
        emitted at t feeds the neighbours' input at t + 1), so they unroll
        step by step with the inbox routing ``inbox_idx/inbox_mask
        [B, T, n, k]``; gradients flow from receivers into senders.

        Feed-forward agents (``recurrent=False``) without messages run every
        step of every sequence in one batched pass through the MLP.
        """
        if self.communicates:
            if inbox_idx is None or inbox_mask is None:
                raise ValueError("a communicating team unrolls with its inbox routing (inbox_idx, inbox_mask)")
            B, T, n = obs.shape[:3]
            h = obs.new_zeros(B, n, self.hidden_dim)
            msg = obs.new_zeros(B, n, self.msg_dim)
            qs = []
            for t in range(T):
                last = None if last_action is None else last_action[:, t]
                q, h, msg = self.step(obs[:, t], h, last, msg, inbox_idx[:, t], inbox_mask[:, t])
                qs.append(q)
            return torch.stack(qs, 1)
        B, T, n = obs.shape[:3]
        flat_obs = obs.reshape(B * T, n, -1)
        flat_last = None if last_action is None else last_action.reshape(B * T, n, -1)
        x = self.build_inputs(flat_obs, flat_last).view(B, T, n, -1)
        outs = []
        for i, core in enumerate(self.cores if self.shared else self.cores[:n]):
            xi = x if self.shared else x[:, :, i : i + 1]
            if not self.recurrent:
                outs.append(core.fc2(core.mlp_hidden(xi)))  # [B, T, m, A]: no state, all steps at once
                continue
            m = xi.shape[2]
            seq = F.relu(core.fc1(xi)).permute(1, 0, 2, 3).reshape(T, B * m, -1)  # [T, B*m, h]
            h0 = seq.new_zeros(1, B * m, self.hidden_dim)
            cell = core.rnn
            hs, _ = torch.gru(seq, h0, [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh], True, 1, 0.0, self.training, False, False)
            q = core.fc2(hs).view(T, B, m, -1).permute(1, 0, 2, 3)
            outs.append(q)
        return outs[0] if self.shared else torch.cat(outs, dim=2)

    def agent_policy(self, agent: int) -> "AgentPolicy":
        return ContinuousAgentPolicy(self, agent) if self.continuous else AgentPolicy(self, agent)


class AgentPolicy(nn.Module):
    """One agent's acting graph (docs/design.md contract 4), sharing ``net``'s weights.

    Inputs, in this order (``input_names``): ``obs [b, obs_dim]``,
    ``avail_actions [b, A]`` (bool or 0/1), ``hidden [b, h]`` (recurrent
    agents only); when communicating ``msg_in [b, k_max, d]`` and ``msg_mask
    [b, k_max]`` (bool or 0/1); when the network takes it ``prev_action [b, A]``
    (one-hot of this agent's previous action, zeros at the first step).
    Outputs (``output_names``): ``action [b]`` (masked greedy, int64),
    ``hidden_out [b, h]`` (recurrent agents only), ``msg_out [b, d]`` (when
    communicating), ``q [b, A]``. A feed-forward agent's graph is called
    without the hidden slot: ``policy(obs, avail_actions, msg_in, ...)``.
    """

    def __init__(self, net: RNNAgent, agent: int) -> None:
        super().__init__()
        if not 0 <= agent < net.max_agents:
            raise ValueError(f"agent {agent} out of range 0..{net.max_agents - 1}")
        self.agent = agent
        self.core = net.cores[0 if net.shared else agent]
        self.recurrent = net.recurrent
        self.takes_prev_action = net.last_action
        self.communicates = net.communicates
        self.head = net.head
        self.k_max, self.msg_dim = net.k_max, net.msg_dim
        ident = torch.zeros(net.max_agents if net.agent_id else 0)
        if net.agent_id:
            ident[agent] = 1.0
        self.register_buffer("agent_onehot", ident, persistent=False)

    @property
    def input_names(self) -> list[str]:
        return ["obs", "avail_actions"] + (["hidden"] if self.recurrent else []) + (["msg_in", "msg_mask"] if self.communicates else []) + (
            ["prev_action"] if self.takes_prev_action else []
        )

    @property
    def output_names(self) -> list[str]:
        return ["action"] + (["hidden_out"] if self.recurrent else []) + (["msg_out"] if self.communicates else []) + [self.head]

    def _split_hidden(self, rest: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """(hidden, the inputs after it): recurrent graphs take ``hidden`` first, feed-forward ones have no such slot."""
        if not self.recurrent:
            return None, list(rest)
        if not rest or rest[0] is None:
            raise ValueError(f"this agent is recurrent: inputs are {', '.join(self.input_names)}")
        return rest[0], list(rest[1:])

    def forward(self, obs: torch.Tensor, avail_actions: torch.Tensor, *rest: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        hidden, extra_l = self._split_hidden(rest)
        msg_in = msg_mask = prev_action = None
        if self.communicates:
            if len(extra_l) < 2:
                raise ValueError(f"this agent communicates: inputs are {', '.join(self.input_names)}")
            msg_in, msg_mask = extra_l.pop(0), extra_l.pop(0)
        if self.takes_prev_action and extra_l:
            prev_action = extra_l.pop(0)
        if any(e is not None for e in extra_l):
            raise ValueError(f"unexpected extra inputs; this policy takes {', '.join(self.input_names)}")
        parts = [obs]
        if self.agent_onehot.numel():
            parts.append(self.agent_onehot.expand(obs.shape[0], -1))
        if self.takes_prev_action:
            parts.append(prev_action if prev_action is not None else obs.new_zeros(obs.shape[0], self.core.fc2.out_features))
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else obs
        q, h, msg = self.core(x, hidden, msg_in, msg_mask)
        action = masked_greedy(q, avail_actions)
        return (action,) + ((h,) if self.recurrent else ()) + ((msg,) if msg is not None else ()) + (q,)


class ContinuousAgentPolicy(AgentPolicy):
    """A deterministic continuous actor's graph: no availability mask, no diagnostic head.

    Inputs: ``obs [b, obs_dim]``, ``hidden [b, h]`` (recurrent only) (+ ``msg_in``, ``msg_mask``).
    Outputs: ``action [b, action_dim]`` float32 (``action_scale * tanh``),
    ``hidden_out [b, h]`` (recurrent only) (+ ``msg_out [b, d]``).
    """

    def __init__(self, net: RNNAgent, agent: int) -> None:
        super().__init__(net, agent)
        self.scale = net.action_scale

    @property
    def input_names(self) -> list[str]:
        return ["obs"] + (["hidden"] if self.recurrent else []) + (["msg_in", "msg_mask"] if self.communicates else [])

    @property
    def output_names(self) -> list[str]:
        return ["action"] + (["hidden_out"] if self.recurrent else []) + (["msg_out"] if self.communicates else [])

    def forward(self, obs: torch.Tensor, *rest: torch.Tensor | None) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        hidden, extra = self._split_hidden(rest)
        msg_in = msg_mask = None
        extra_l = [e for e in extra if e is not None]
        if self.communicates:
            if len(extra_l) < 2:
                raise ValueError(f"this agent communicates: inputs are {', '.join(self.input_names)}")
            msg_in, msg_mask = extra_l[0], extra_l[1]
            extra_l = extra_l[2:]
        if extra_l:
            raise ValueError(f"unexpected extra inputs; this policy takes {', '.join(self.input_names)}")
        parts = [obs]
        if self.agent_onehot.numel():
            parts.append(self.agent_onehot.expand(obs.shape[0], -1))
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else obs
        out, h, msg = self.core(x, hidden, msg_in, msg_mask)
        action = torch.tanh(out) * self.scale
        return (action,) + ((h,) if self.recurrent else ()) + ((msg,) if msg is not None else ())
