package natsjs

// Wrap is wrap, for the classification test.
var Wrap = wrap
