"""Reports: figures, HTML pages and the runners that write result folders."""
