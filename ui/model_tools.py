"""Plugin menu actions: copy the shipped workflow model into the user's models folder (and open it in
the graphical modeler), and style toolkit rasters added by hand."""

import os
import shutil

MODEL_NAME = "workflow.model3"
COPY_NAME = "subsidence_workflow.model3"


def shipped_model_path():
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "processing_provider", "models", MODEL_NAME)


def user_models_folder():
    """The first folder of Processing's *Models* setting (default ``<profile>/processing/models``)."""
    try:
        from processing.modeler.ModelerUtils import ModelerUtils

        folders = [f for f in ModelerUtils.modelsFolders() if f]
        if folders:
            os.makedirs(folders[0], exist_ok=True)
            return folders[0]
    except Exception:  # noqa: BLE001 - fall back to the profile folder
        pass
    from qgis.core import QgsApplication

    folder = os.path.join(QgsApplication.qgisSettingsDirPath(), "processing", "models")
    os.makedirs(folder, exist_ok=True)
    return folder


def copy_workflow_model(folder=None):
    """Copy the shipped model into ``folder`` (default: the user's models folder) under a name that does
    not overwrite an earlier copy (``subsidence_workflow.model3``, ``subsidence_workflow_2.model3``, ...).
    Returns the new path; the model provider is refreshed so the copy appears under *Models*."""
    folder = folder or user_models_folder()
    base, ext = os.path.splitext(COPY_NAME)
    dest = os.path.join(folder, COPY_NAME)
    k = 2
    while os.path.exists(dest):
        dest = os.path.join(folder, "%s_%d%s" % (base, k, ext))
        k += 1
    shutil.copyfile(shipped_model_path(), dest)
    try:
        from qgis.core import QgsApplication

        provider = QgsApplication.processingRegistry().providerById("model")
        if provider is not None:
            provider.refreshAlgorithms()
    except Exception:  # noqa: BLE001 - the copy is what matters
        pass
    return dest


def open_in_modeler(path):
    """Open the model file in the graphical modeler (saving writes back to ``path``)."""
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    if not model.fromFile(path):
        raise ValueError("could not read the model %s" % path)
    model.setSourceFilePath(path)
    from processing.modeler.ModelerDialog import ModelerDialog

    dialog = ModelerDialog.create(model) if hasattr(ModelerDialog, "create") else ModelerDialog(model)
    dialog.show()
    return dialog


def style_layers(layers):
    """Apply the toolkit style to every raster in ``layers``; returns ``[(name, kind or error)]``."""
    from ..processing_provider.styling import apply_toolkit_style

    done = []
    for layer in layers:
        try:
            done.append((layer.name(), apply_toolkit_style(layer)))
        except Exception as e:  # noqa: BLE001 - reported to the user
            done.append((layer.name(), "not styled: %s" % e))
    return done
