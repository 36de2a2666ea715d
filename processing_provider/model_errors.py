"""One-line errors for the shipped models: which step failed and why."""

import functools

from qgis.core import QgsProcessingFeedback

from .transaction import Interrupted


def _called_from_cpp(method):
    """A Python method QGIS's C++ calls (a virtual of the feedback): the :class:`~.transaction.Interrupted` a
    signal handler raises inside it is swallowed. An exception escaping into C++ there is fatal (PyQt calls
    ``qFatal``: the process aborts, staged files and all); the handler has already recorded the signal and
    cancelled the feedback, so the run stops at the next step and reports it."""

    @functools.wraps(method)
    def shielded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Interrupted:
            return None

    return shielded


class ErrorRecorder(QgsProcessingFeedback):
    """A feedback that forwards everything to ``target`` and remembers the errors reported on it (its methods are
    called from QGIS's C++: a signal arriving in one never raises out of it, see :func:`_called_from_cpp`)."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.errors = []
        if target is not None:
            target.canceled.connect(self.cancel)
            if target.isCanceled():
                self.cancel()

    @_called_from_cpp
    def reportError(self, error, fatalError=False):
        self.errors.append(str(error))
        if self.target is not None:
            self.target.reportError(error, fatalError)

    @_called_from_cpp
    def setProgress(self, progress):
        super().setProgress(progress)
        if self.target is not None:
            self.target.setProgress(progress)

    @_called_from_cpp
    def setProgressText(self, text):
        if self.target is not None:
            self.target.setProgressText(text)

    @_called_from_cpp
    def pushInfo(self, info):
        if self.target is not None:
            self.target.pushInfo(info)

    @_called_from_cpp
    def pushWarning(self, warning):
        if self.target is not None and hasattr(self.target, "pushWarning"):
            self.target.pushWarning(warning)

    @_called_from_cpp
    def pushCommandInfo(self, info):  # noqa: N802
        if self.target is not None:
            self.target.pushCommandInfo(info)

    @_called_from_cpp
    def pushDebugInfo(self, info):
        if self.target is not None:
            self.target.pushDebugInfo(info)

    @_called_from_cpp
    def pushConsoleInfo(self, info):  # noqa: N802
        if self.target is not None:
            self.target.pushConsoleInfo(info)


def step_failure(model, message, errors):
    """'step "<description>" (<algorithm name, when different>) failed: <the step's own one-line error>'."""
    message = str(message).strip()
    step = None
    for child in model.childAlgorithms().values():
        if child.description() and child.description() in message:
            step = child
            break
    reasons = [e.strip().splitlines()[-1] for e in errors if e.strip() and e.strip() != message]
    reason = reasons[-1] if reasons else message
    if step is None:
        return reason if reason != message else message
    alg = step.algorithm()
    name = alg.displayName() if alg is not None else step.algorithmId()
    label = '"%s"' % step.description() + ("" if name == step.description() else " (%s)" % name)
    return "step %s failed: %s" % (label, reason)
