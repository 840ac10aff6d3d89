"""The Scrapy project: one generic `news` spider driven by the sources config (see scrapy.cfg)."""
