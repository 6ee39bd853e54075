"""One sequence of action commands replayed through the node and through the bag tool.

Both tests assert the same labels per frame, so the two adapters cannot drift apart on the
action policy (an unknown command keeps the previous valid action).
"""

# (frame index, command): an unknown command before any valid one, then between valid ones.
REPLAYED_ACTIONS = ((2, 'fly'), (4, 'hold'), (5, 'fly'), (6, 'Pour'), (7, 'zzz'))
# What the node's rule (keep the previous valid action) gives each of the 9 frames.
NODE_RULE_LABELS = ('', '', '', '', 'hold', 'hold', 'pour', 'pour', 'pour')
