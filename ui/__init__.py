"""GUI parts of the plugin (dock widgets, map tools, icons). Never imported under qgis_process."""
