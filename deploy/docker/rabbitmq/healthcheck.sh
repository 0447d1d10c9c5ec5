#!/bin/bash
# Healthy = the accounts exist and the AMQP port answers the protocol header
# with a Connection.Start frame (type 1). Cheap: no Erlang CLI start-up.
[[ -e /var/lib/rabbitmq/movie-platform-accounts ]] || exit 1
exec 3<>/dev/tcp/127.0.0.1/5672 || exit 1
printf 'AMQP\x00\x00\x09\x01' >&3
IFS= read -r -n 1 -d '' -t 2 frame <&3 || exit 1
[[ $frame == $'\x01' ]]
