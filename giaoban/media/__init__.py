"""Media plane: supervised Janus, asyncio Janus client, VideoRoom helpers, event ingestion.

Python only signals and orchestrates; Janus forwards every media packet. See docs/media.md.
"""

from giaoban.media.client import (
    ClientEvent,
    JanusAdminClient,
    JanusClient,
    JanusClientError,
    JanusConnectionError,
    JanusError,
    JanusHandle,
    JanusPluginError,
    JanusSession,
    JanusSessionLostError,
    JanusTimeoutError,
    PluginResponse,
)
from giaoban.media.config import JanusNode, JanusSettings, load_janus_settings
from giaoban.media.events import EventStore, HandleState, StreamStats
from giaoban.media.moderation import ModerationKeeper
from giaoban.media.service import MediaEvent, MediaService
from giaoban.media.supervisor import JanusStartError, JanusSupervisor, render_janus_config, write_janus_config
from giaoban.media.videoroom import RoomOptions, VideoRoom, VideoRoomPublisher, VideoRoomSubscriber

__all__ = [
    "ClientEvent",
    "EventStore",
    "HandleState",
    "JanusAdminClient",
    "JanusClient",
    "JanusClientError",
    "JanusConnectionError",
    "JanusError",
    "JanusHandle",
    "JanusNode",
    "JanusPluginError",
    "JanusSession",
    "JanusSessionLostError",
    "JanusSettings",
    "JanusStartError",
    "JanusSupervisor",
    "JanusTimeoutError",
    "MediaEvent",
    "MediaService",
    "ModerationKeeper",
    "PluginResponse",
    "RoomOptions",
    "StreamStats",
    "VideoRoom",
    "VideoRoomPublisher",
    "VideoRoomSubscriber",
    "load_janus_settings",
    "render_janus_config",
    "write_janus_config",
]
