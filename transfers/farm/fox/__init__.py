"""The Fox Renderfarm / Renderbus farm: request signing, the REST client, the connector, line choice."""

from transfers.farm.fox.connector import FoxFarm, FoxIdentity

__all__ = ["FoxFarm", "FoxIdentity"]
