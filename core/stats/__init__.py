"""Statistics: natural breaks (:mod:`.breaks`), Geodetector (:mod:`.geodetector`), lagged correlation
(:mod:`.lagcorr`), validation against measurements (:mod:`.validation`), class sampling (:mod:`.sampling`)."""
