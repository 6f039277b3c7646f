package natsjs

// Wrap is wrap, for the classification test.
var Wrap = wrap

// UntilEndStep is untilEndStep, for the end-condition test.
var UntilEndStep = untilEndStep
