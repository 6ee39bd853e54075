"""Action commands: parsed (labels, synonyms, optional CLIP text fallback), applied, announced.

One shared action for every camera (``action``) and, per named camera, an own action
(``<camera>/action``; an empty text there follows the shared one again). What each camera runs
is announced, latched, on ``active_action`` / ``<camera>/active_action``.
"""

import os
from typing import Dict, Optional, Sequence

from affordance_grounding.inference.text_encoder import open_text_fallback
from affordance_grounding.ros.channels import CameraChannel, SharedState
from affordance_grounding.ros.health import NodeHealth
from affordance_grounding.ros.params import NodeConfig, parse_default_action
from affordance_grounding.vocabulary import ActionCommand, parse_action_command
from std_msgs.msg import String


class ActionCommands:
    """The node's action state machine; runs in the executor thread."""

    def __init__(self, node, health: NodeHealth):
        """``node`` gives the logger and the ``active_action`` publisher (its topics)."""
        self._node = node
        self._health = health
        self._labels: Sequence[str] = ()
        self._text_matcher = None
        self.description = ''
        self._announced: Dict[str, str] = {}  # named camera -> what it last announced

    def load(self, config: NodeConfig, labels: Sequence[str]) -> ActionCommand:
        """Load the phrase fallback for a model; return its parsed ``default_action``.

        Raises:
            ParameterError: If ``default_action`` is not understood.
        """
        self._labels = tuple(labels)
        self._text_matcher = self._load_text_matcher(config)
        command = self.parse_default(config)
        self.description = command.describe()
        return command

    def release(self) -> None:
        """Forget the model's labels and its text tower."""
        self._labels, self._text_matcher = (), None

    def _load_text_matcher(self, config: NodeConfig):
        """Load the CLIP text fallback for action phrases when ``<model>.text.onnx`` exists."""
        fallback = open_text_fallback(os.path.expanduser(config.model_path), self._labels)
        logger = self._node.get_logger()
        (logger.warning if fallback.failed else logger.info)(fallback.note)
        return fallback.matcher

    def parse(self, text: str, config: NodeConfig) -> ActionCommand:
        """Parse a command as every entry point does (raises ``ValueError`` when unknown)."""
        return parse_action_command(text, self._labels, self._text_matcher,
                                    config.action_min_text_margin)

    def parse_default(self, config: NodeConfig) -> ActionCommand:
        """Parse ``default_action`` as the action topic would (``ParameterError`` if not)."""
        return parse_default_action(config, self._labels, self._text_matcher)

    def on_message(self, text: str, state: SharedState, channels: Dict[str, CameraChannel],
                   camera: Optional[str] = None) -> None:
        """Apply an action for every camera (``camera`` None), or one camera's own."""
        channel = None if camera is None else channels[camera]
        try:
            command = self.parse(text, state.config)
        except ValueError as error:
            current = (channel.action(state) if channel else state.command)[0]
            where = f' for camera {camera}' if channel else ''
            if self._health.problems.report('bad_action', str(error)):
                self._node.get_logger().warning(f'[bad_action] rejected action command{where}: '
                                                f'{error}; keeping {current or "idle"!r}')
            return
        if channel is None:
            self.set_shared(command, state, channels)
            return
        channel.command = command.key if command.label else None
        if command.label:
            self._node.get_logger().info(f'camera {camera}: own action {command.describe()}')
        self.announce_cameras(state, channels)

    def set_shared(self, command: ActionCommand, state: SharedState,
                   channels: Dict[str, CameraChannel]) -> None:
        """Make ``command`` the shared action (no-op when unchanged) and announce it."""
        if command.describe() == self.description:
            return
        state.command = command.key
        self.description = command.describe()
        self.publish_shared()
        self._node.get_logger().info(f'action: {self.description or "idle"}')
        self.announce_cameras(state, channels)

    def publish_shared(self) -> None:
        """Publish the shared action on ``active_action``."""
        self._node.topics.active_action.publish(String(data=self.description))

    def announce_cameras(self, state: SharedState, channels: Dict[str, CameraChannel],
                         again: bool = False) -> None:
        """Publish on ``<camera>/active_action`` what each named camera runs, if changed."""
        if again:
            self._announced = {}
        for camera, channel in channels.items():
            publisher = channel.publishers.active_action
            if publisher is None:
                continue
            label = channel.action(state)[0]
            text = (self.description if channel.command is None
                    else f'{label} (own action of camera {camera})')
            if self._announced.get(camera) != text:
                self._announced[camera] = text
                publisher.publish(String(data=text))
