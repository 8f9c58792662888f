#!/usr/bin/env perl
# Echo server on Perl's Net::Server::PreFork (Debian: libnet-server-perl): a
# peer of realfork serve --prefork in `realfork bench --server perl-prefork`
# and `compare --peers`.
#
#   echo_net_server_prefork.pl <port> [buffer_size] [workers]    (port 0: the system
#                                                                 picks; buffer 30, 4 workers)
#
# Exactly N workers, as realfork serve --prefork N and c/echo_preforkserv keep:
# min = max servers = N (the module never kills below min_servers, and it
# requires max_spare_servers < max_servers), and no worker retires after a
# number of requests (the module's default, 1000, would fork during the load). Listens on
# 127.0.0.1 only. SIGTERM or SIGINT: Net::Server's own shutdown.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use RealforkEcho;

package EchoPreFork;
use parent 'Net::Server::PreFork';

my ($port, $buf_size, $workers) = RealforkEcho::args('<port> [buffer_size] [workers]', 3);

sub process_request {
    my ($self) = @_;
    RealforkEcho::echo($self->{server}->{client}, $buf_size);
}

EchoPreFork->run(
    RealforkEcho::options($port),
    min_servers       => $workers,
    max_servers       => $workers,
    min_spare_servers => 0,
    max_spare_servers => $workers - 1,
    max_requests      => 1 << 30,
);
