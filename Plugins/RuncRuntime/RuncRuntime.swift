// The runc runtime plugin: being written (issue 3). Until it exports `capstan_plugin_v1`, the
// loader refuses this library as "not a Capstan plugin".
