"""The ZeroMQ bridge between a game engine and an agent process (protocol: docs/bridge-protocol.md).

    aql deploy --checkpoint runs/aql-moba --bind tcp://127.0.0.1:5555     # the agent side
    tools/engine --connect tcp://127.0.0.1:5555 --games 20 --opponent bt:medium   # moba-1v1 as the engine
    tools/engine --env connect-four --connect tcp://127.0.0.1:5555 --games 20  # any game kind as the engine
"""

from aql_agent.adapters.bridge.agent import AgentServer
from aql_agent.adapters.bridge.engine import BridgeRefused, EngineClient
from aql_agent.adapters.bridge.policies import (BridgePolicy, CheckpointPolicy, GamePlayerPolicy, RandomPolicy,
                                                ServedPolicy, make_bridge_policy)
from aql_agent.adapters.bridge.protocol import PROTOCOL, VERSION, BridgeError, EnvSpec

__all__ = ["PROTOCOL", "VERSION", "AgentServer", "BridgeError", "BridgePolicy", "BridgeRefused", "CheckpointPolicy",
           "EngineClient", "EnvSpec", "GamePlayerPolicy", "RandomPolicy", "ServedPolicy", "make_bridge_policy"]
