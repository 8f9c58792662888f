#!/usr/bin/env perl
# Echo server on Perl's Net::Server::Fork (Debian: libnet-server-perl): a peer
# of realfork serve in `realfork bench --server perl-fork` and `compare --peers`.
#
#   echo_net_server_fork.pl <port> [buffer_size]    (port 0: the system picks; buffer 30)
#
# Net::Server::Fork as it comes: the parent accepts and forks a child per
# connection. Listens on 127.0.0.1 only. SIGTERM or SIGINT: Net::Server's own
# shutdown.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use RealforkEcho;

package EchoFork;
use parent 'Net::Server::Fork';

my ($port, $buf_size) = RealforkEcho::args('<port> [buffer_size]', 2);

sub process_request {
    my ($self) = @_;
    RealforkEcho::echo($self->{server}->{client}, $buf_size);
}

EchoFork->run(RealforkEcho::options($port));
