"""The offline sample news site: several outlets on 127.0.0.1 for the demo, the tests and benchmarks.

from examples.sample_site import SampleSite, BOILERPLATE_PHRASES
with SampleSite() as site:          # free ports
    site.base_urls, site.expected(), site.write_sources_yaml(path)
"""

from examples.sample_site.boilerplate import BOILERPLATE_PHRASES
from examples.sample_site.server import SampleSite

__all__ = ["BOILERPLATE_PHRASES", "SampleSite"]
