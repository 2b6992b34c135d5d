"""The vendor's `rayvision_transmitter` as a transport: its command line (command), its output
(output), one process of it (process), and a run of many files through it (leg).

rvweb never imports the vendor SDK; it builds the same command line itself, as an argv list (no
shell), and checks every file the transmitter reports done (size and rvweb's checksum).
"""

from transfers.engine.transmitter.command import TransmitSpec
from transfers.engine.transmitter.leg import run_transmitter_leg
from transfers.engine.transmitter.process import ProcessResult, run_transmitter

__all__ = ["ProcessResult", "TransmitSpec", "run_transmitter", "run_transmitter_leg"]
