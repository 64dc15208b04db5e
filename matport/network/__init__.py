"""Layer 2: MATLAB class objects -> a typed network model (no torch)."""

from matport.network.build import build_network
from matport.network.find import NetworkRef, find_networks, network_from_ref, read_network
from matport.network.model import Connection, Layer, Network, Normalization

__all__ = [
    "Connection",
    "Layer",
    "Network",
    "NetworkRef",
    "Normalization",
    "build_network",
    "find_networks",
    "network_from_ref",
    "read_network",
]
